"""RIFE v4.x frame interpolation network (our implementation; loads the released weights)."""

from .config import PRESETS, RIFEConfig, get_preset
from .loader import (INSPECTABLE, Verdict, build_model, convert_state_dict, inspect_entries, load_rife,
                     read_state_dict, rule_state_dict, verify_file)
from .model import IFNet, IFNetOutput

__all__ = ["INSPECTABLE", "Verdict", "inspect_entries", "verify_file", "IFNet", "IFNetOutput", "PRESETS", "RIFEConfig", "build_model", "convert_state_dict", "get_preset",
           "load_rife", "read_state_dict", "rule_state_dict"]
