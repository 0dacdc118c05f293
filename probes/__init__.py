"""Measurements of trained members, behind one calling convention and a registry (probes/registry.py).

Importing the package registers the built-in probes: recognition and ties (the row's own metrics, always run
first), norm growth, saturation, attention heads, the query and key maps of each layer, and linear probes. The theory
check of the hand-built constructions (probes/theory_check.py) measures those constructions rather than trained
members.
"""

from satbench.probes import (  # noqa: F401  (registers them)
    attention_maps,
    evaluate,
    heads,
    linear_probe,
    norm_growth,
    saturation_similarity,
    ties,
)
from satbench.probes.registry import PROBES, Probe, ProbeConfig, ProbeRun, probe_classes, register
from satbench.probes.report_section import ProbeReport, Table, recorded_reports

__all__ = ["PROBES", "Probe", "ProbeConfig", "ProbeReport", "ProbeRun", "Table", "probe_classes", "recorded_reports",
           "register"]
