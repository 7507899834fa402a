"""One ONNX model cache for the whole test run. The speaker models are exported once into it (3–8 s of CPU,
`bot/speech/onnx.py`); every process the tests start that loads them — this one, the embedded engine's workers,
`python -m bot worker` and `engine-server` children, xdist workers — loads the exported files instead of
exporting again. conftest.py creates it when the run starts; children inherit its path in the environment."""
from __future__ import annotations

import os
from pathlib import Path

ENV = "VOICEID_TEST_MODEL_CACHE"


def model_cache() -> Path:
    """The run's ONNX cache folder."""
    return Path(os.environ[ENV])


def share_model_cache(var_dir: Path) -> Path:
    """`var_dir`, set up so that a process using it as VAR_DIR finds its ONNX models in the run's cache (its
    `models/onnx` folder is a link to it)."""
    from bot.speech.onnx import cache_folder

    folder = cache_folder(var_dir)
    if not folder.is_symlink():
        folder.parent.mkdir(parents=True, exist_ok=True)
        folder.symlink_to(model_cache(), target_is_directory=True)
    return var_dir
