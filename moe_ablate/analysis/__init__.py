"""Analysis of study folders: statistics (pandas), plots (seaborn) and the markdown report."""

from .report import analyze_study
from .stats import analyze, load_records

__all__ = ["analyze_study", "analyze", "load_records"]
