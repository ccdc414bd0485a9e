"""Scoring blur maps like the paper: metrics, folder and detector scoring, plots."""

from keras_defusion.errors import EvaluationError
from keras_defusion.evaluation.report import F_PLOT_NAME
from keras_defusion.evaluation.report import PR_PLOT_NAME
from keras_defusion.evaluation.report import build_report
from keras_defusion.evaluation.report import format_table
from keras_defusion.evaluation.report import plot_curves
from keras_defusion.evaluation.report import write_report
from keras_defusion.evaluation.scoring import evaluate_detector
from keras_defusion.evaluation.scoring import evaluate_folder
from keras_defusion.evaluation.scoring import evaluate_folders
from keras_defusion.evaluation.scoring import gt_files
from keras_defusion.evaluation.scoring import images_dir_beside
from keras_defusion.evaluation.scoring import index_by_stem
from keras_defusion.evaluation.scoring import load_map
from keras_defusion.evaluation.scoring import pair_by_stem
from keras_defusion.evaluation.scoring import resolve_gt_dir
