"""transferkit: a small kit for teaching transfer learning with Keras 3.

Layers, imported one way: environment -> data -> models -> transfer -> training
-> source -> plots.
"""
from .environment import cache_dir, describe_device, device_report, set_seed
from .data import (DIGITS, UPPERCASE, Dataset, Task, few_shot, glyph_dataset, handwritten_digits,
                   source_task, split, target_task)
from .models import block_layers, block_names, build_model, feature_extractor
from .transfer import (LoadReport, RecompileError, check_recompiled, freeze,
                       load_matching_weights, param_summary, read_weights_file, save_model,
                       save_weights,
                       unfreeze)
from .training import (RunHistory, Scores, compile_model, repeat_for, evaluate, fine_tune, fit,
                       predict_classes, train_from_scratch)
from .source import SOURCE_RECIPE, SourceModel, publish_source, source_model, train_source_model
from .plots import LiveCurves, plot_bars, plot_confusion, plot_history, show_images

__version__ = "0.1.0"
