"""RIFE v4.x frame interpolation network (our implementation; loads the released weights)."""

from .config import PRESETS, RIFEConfig, get_preset
from .loader import build_model, convert_state_dict, load_rife, read_state_dict, rule_state_dict
from .model import IFNet, IFNetOutput

__all__ = ["IFNet", "IFNetOutput", "PRESETS", "RIFEConfig", "build_model", "convert_state_dict", "get_preset",
           "load_rife", "read_state_dict", "rule_state_dict"]
