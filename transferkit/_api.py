"""The kit's public names: what notebooks 00-11 call as ``tk.X``, grouped by the notebook that
first uses them (``transferkit/__init__.py`` re-exports them).  Everything else is reached
through its module: ``tk.choosing.logme``, ``tk.data.split``, ``tk.strategies.get_strategy``.

Importing this module imports Keras and the backend.
"""
# every module as tk.<module>; environment first: it sets the numerics up before NumPy loads
from . import environment  # noqa: F401  (must stay the first import)
from . import (checks, strategies, claims, arraychecks, data, onlinefiles, models,  # noqa: F401
               weightfiles, datachecks, online, transfer, history, training, evaluation,
               reproducibility, experiments, features, knowledge, source, cachecheck, failures,
               choosing, curves, plots, lab)
from types import ModuleType as _ModuleType

# 00 index: the device, the data
from .environment import describe_device, device_report
from .data import Dataset, Task, few_shot, handwritten_digits, source_task, target_task
from .reproducibility import numerics_fingerprint
from .plots import show_images
# 01 source training: build, compile, fit, evaluate, save
from .environment import cache_dir, set_seed
from .models import build_model
from .training import compile_model, fit
from .evaluation import Scores, evaluate
from .transfer import param_summary, save_model, save_weights
from .source import SOURCE_RECIPE, publish_source
from .curves import LiveCurves
from .plots import plot_confusion
from .claims import claim
# 02 weight loading
from .source import source_model
from .transfer import load_matching_weights, read_weights_file
# 03 freezing
from .transfer import freeze
from .training import RecompileError, repeat_for
# 04 fine-tuning
from .transfer import unfreeze
from .strategies import BN_MODES
from .experiments import fine_tune, train_from_scratch
from .curves import plot_history
from .plots import plot_bars
# 05 strategy lab
from .strategies import STRATEGIES
from .experiments import sweep
from .plots import plot_sweep
from .lab import StrategyLab
# 06 feature transfer
from .features import (coral, embed, extract_features, feature_maps, first_layer_filters,
                       linear_probe, plot_embeddings, plot_feature_maps, plot_filters,
                       plot_weight_change, random_like, snapshot_weights, weight_change)
# 07 knowledge transfer: distillation, L2-SP
from .knowledge import (DistillationLoss, attach_l2sp, distill, l2sp_penalty, pack_targets,
                        teacher_logits, unlabelled_rest)
from .evaluation import complexity
# 08 when transfer fails
from .data import SHIFT_KINDS, shift, shift_task
from .source import SOURCE_TASKS
from .experiments import run_strategy
from .failures import accuracy_under_shift, forgetting, with_head
from .transfer import adapt_batchnorm
# 09 evaluation and choosing
from .evaluation import class_report, over_seeds, score_predictions
from .source import SOURCE_RECIPES
from .choosing import rank_sources, recommend_strategy
# 10 pretrained backbone (online, optional)
from .models import feature_extractor
from .online import (ONLINE_DATASETS, OfflineError, backbone_architecture, load_online_dataset,
                     online_cache_dir, online_file_paths, online_task, pretrained_backbone,
                     pretrained_target_model, try_online)
# 11 full workflow: augmentation, early stopping, a schedule, a kept model, the worst mistakes
from .models import augmentation_layers
from .training import steps_per_epoch
from .evaluation import predict, worst_mistakes
from .plots import plot_mistakes, show_augmented

# the names above, not the modules (``tk.<module>`` is there anyway: the package's submodules)
__all__ = [name for name, value in dict(globals()).items()
           if not name.startswith("_") and not isinstance(value, _ModuleType)]
