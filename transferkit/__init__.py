"""transferkit: a small kit for teaching transfer learning with Keras 3.

Layers, imported one way: environment -> data -> models -> transfer -> strategies
-> training -> source -> plots -> lab.
"""
from .environment import cache_dir, describe_device, device_report, set_seed
from .data import (DIGITS, UPPERCASE, Dataset, Task, few_shot, glyph_dataset, handwritten_digits,
                   source_task, split, target_task)
from .models import block_layers, block_names, build_model, feature_extractor
from .transfer import (LoadReport, RecompileError, check_recompiled, freeze,
                       load_matching_weights, param_summary, read_weights_file, save_model,
                       save_weights,
                       unfreeze)
from .strategies import STRATEGIES, Strategy, get_strategy
from .training import (RunHistory, Scores, StrategyRun, compile_model, evaluate, fine_tune, fit,
                       predict_classes, repeat_for, run_strategy, sweep, train_from_scratch)
from .source import SOURCE_RECIPE, SourceModel, publish_source, source_model, train_source_model
from .plots import LiveCurves, plot_bars, plot_confusion, plot_history, plot_sweep, show_images
from .lab import StrategyLab

__version__ = "0.1.0"
