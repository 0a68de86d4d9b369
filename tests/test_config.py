import json

import pytest

from moe_ablate.config import ExperimentConfig, apply_overrides, preset_config, validate
from moe_ablate.errors import UserError


@pytest.mark.parametrize("preset", ["seed", "tiny", "exp9", "exp3"])
def test_presets_roundtrip_json_exactly(preset):
    cfg = preset_config(preset)
    again = ExperimentConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert again.to_dict() == cfg.to_dict()


def test_seed_preset_is_the_seeds_model():
    m, t = preset_config("seed").model, preset_config("seed").train
    assert (m.d_model, m.n_layers, m.n_heads, m.d_ff, m.num_experts, m.top_k) == (384, 6, 8, 1536, 8, 2)
    assert (t.seq_len, t.batch_size) == (256, 16)


@pytest.mark.parametrize("override, message", [
    ({"model.d_model": 100, "model.n_heads": 8}, "divisible by n_heads"),
    ({"model.top_k": 9}, "top_k"),
    ({"train.muon_lr": 0.0}, "muon_lr"),
    ({"train.muon_lr": -1.0}, "muon_lr"),
    ({"train.steps": 0}, "steps"),
    ({"train.batch_size": 0}, "batch_size"),
    ({"train.seq_len": -5}, "seq_len"),
    ({"data.source": "hf:"}, "hub source"),
    ({"data.source": "corpus.docx"}, "unknown data source"),
    ({"model.name": "gpt5"}, "unknown model"),
    ({"train.seq_len": 512}, "exceeds the model's max_seq_len"),
])
def test_validation_names_the_problem(override, message):
    with pytest.raises(UserError, match=message):
        validate(apply_overrides(preset_config("tiny"), override))


def test_unknown_preset_and_setting():
    with pytest.raises(UserError, match="unknown preset"):
        preset_config("huge")
    with pytest.raises(UserError, match="unknown setting"):
        apply_overrides(ExperimentConfig(), {"train.lr": 1})
    with pytest.raises(UserError, match="must be int"):
        apply_overrides(ExperimentConfig(), {"train.steps": "many"})
