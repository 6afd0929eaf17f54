"""lmms-eval's entry point for `--model scorerl` (pyproject.toml, group `lmms_eval.models`).

Kept apart from the plugin on purpose: lmms-eval loads its entry points while `lmms_eval.models` is still being
imported, so this module imports nothing of lmms-eval but the registry class it returns, and only when called.
Were the entry point the plugin module itself, importing the plugin first (it imports lmms-eval) would reach
the entry point half-imported and lmms-eval would say "Model 'scorerl' not found" for the rest of the process.
"""

MODEL_NAME = "scorerl"
CLASS_PATH = "scorerl.integrations.lmms_eval.ScoreRLModel"  # imported by lmms-eval when the model is asked for


def manifest():
    """The model's name and class path, as lmms-eval's registry takes them."""
    from lmms_eval.models.registry_v2 import ModelManifest  # loaded before lmms-eval reads its entry points

    return ModelManifest(model_id=MODEL_NAME, simple_class_path=CLASS_PATH)
