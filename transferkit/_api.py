"""The kit's public names, imported in layer order (``transferkit/__init__.py`` re-exports them).

Importing this module imports Keras and the backend.
"""
from .environment import (PRESETS, Preset, cache_dir, describe_device, device_report, preset,
                          set_seed)
from .data import (DIGITS, UPPERCASE, Dataset, Task, few_shot, glyph_dataset, handwritten_digits,
                   source_task, split, target_task)
from .models import block_layers, block_names, build_model, feature_extractor
from .transfer import (LoadReport, freeze, load_matching_weights, param_summary,
                       read_weights_file, save_model, save_weights, unfreeze)
from .strategies import STRATEGIES, Strategy, get_strategy
from .history import RunHistory, StopSwitch
from .training import RecompileError, check_recompiled, compile_model, fit, repeat_for
from .evaluation import Scores, evaluate, predict_classes
from .experiments import StrategyRun, fine_tune, run_strategy, sweep, train_from_scratch
from .source import SOURCE_RECIPE, SourceModel, publish_source, source_model, train_source_model
from .plots import LiveCurves, plot_bars, plot_confusion, plot_history, plot_sweep, show_images
from .lab import StrategyLab
from .features import (Embedding, ProbeResult, embed, extract_features, feature_maps,
                       first_layer_filters, knn_accuracy, linear_probe, plot_embeddings,
                       plot_feature_maps, plot_filters, plot_weight_change, random_like,
                       snapshot_weights, weight_change)
from .knowledge import (L2SP, DistillationLoss, attach_l2sp, detach_l2sp, distill, l2sp_penalty,
                        pack_targets, teacher_logits, unlabelled_rest)
from .online import (ONLINE_DATASETS, OfflineError, backbone_architecture, fetch_online,
                     is_cached, load_online_dataset, online_cache_dir, online_file_paths,
                     online_task, pretrained_backbone, pretrained_target_model, try_online)
from .data import RESTYLE_FONTS, SHIFT_KINDS, shift, shift_task
from .source import SOURCE_RECIPES, SOURCE_TASKS, recipe_key, recipe_task
from .reproducibility import Fingerprint, numerics_fingerprint
from .evaluation import ClassReport, SeedSummary, class_report, over_seeds, score_predictions
from .failures import (Comparison, Forgetting, ShiftReport, accuracy_under_shift,
                       compare_to_scratch, forgetting, with_head)
from .choosing import (Ranking, Recommendation, h_score, logme, probe_accuracy, rank_sources,
                       recommend_strategy)
from .claims import Claim, ClaimError, claim

