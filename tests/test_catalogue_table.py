"""The variant table: each weight-bearing row is one importer naming its class and its loader,
and listing the table imports no model code (no torch)."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

from core import catalogue
from core.generators.base import Generator
from core.postprocess.base import Stage

IMPORTERS = {
    "cami2v": catalogue._cami2v, "svd": catalogue._svd, "sv3d": catalogue._sv3d,
    "fastdvdnet": catalogue._fastdvdnet, "upscale-a-video": catalogue._upscale_a_video,
    "rife": catalogue._rife, "realesrgan": catalogue._realesrgan,
}


def test_weight_bearing_rows_name_a_class_of_their_kind_and_a_loader():
    assert set(IMPORTERS) == {n for n, v in catalogue.VARIANTS.items() if v.loader is not None}
    for name, importer in IMPORTERS.items():
        cls, load_model = importer()
        base = Generator if catalogue.VARIANTS[name].kind == "generator" else Stage
        assert issubclass(cls, base) and callable(cls.from_entry), name
        params = inspect.signature(load_model).parameters
        assert list(params)[:2] == ["registry", "entry"], name
        assert params["device"].kind is params["dtype"].kind is inspect.Parameter.KEYWORD_ONLY, name


def test_listing_the_table_imports_no_model_code():
    code = ("import sys; from core import catalogue; catalogue.VARIANTS['cami2v'].factory; "
            "print(sorted(m for m in ('torch', 'core.generators.cami2v', 'core.postprocess.fastdvdnet') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"
