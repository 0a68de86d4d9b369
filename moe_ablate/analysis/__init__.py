"""Analysis of study records: ranking and significance (``ranking``), statistics (``stats``),
figures (``plots``) and the markdown report (``report``). Reads records; writes nothing itself
except through ``plots``/the study writer (``studies/engine/outputs.py``)."""
