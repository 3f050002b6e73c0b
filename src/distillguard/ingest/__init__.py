"""Ingestion: read exchange logs (CONTRACT §1), validate every row, quarantine the bad ones.

Files are streamed in bounded blocks, so memory does not grow with input size; valid rows
are staged to Parquet for the engine, rejected rows go to ``quarantine.jsonl`` with their
source, line and reason. ``rows_read == rows_valid + rows_quarantined`` always holds.
"""

from distillguard.ingest.sources import SourceFile, expand_inputs
from distillguard.ingest.stage import StageResult, stage_inputs

__all__ = ["SourceFile", "StageResult", "expand_inputs", "stage_inputs"]
