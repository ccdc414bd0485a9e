"""Scoring blur maps like the paper: metrics, folder and detector scoring, plots."""

from keras_defusion.evaluation.scoring import F_PLOT_NAME
from keras_defusion.evaluation.scoring import PR_PLOT_NAME
from keras_defusion.evaluation.scoring import EvaluationError
from keras_defusion.evaluation.scoring import build_report
from keras_defusion.evaluation.scoring import evaluate_detector
from keras_defusion.evaluation.scoring import evaluate_folder
from keras_defusion.evaluation.scoring import evaluate_folders
from keras_defusion.evaluation.scoring import format_table
from keras_defusion.evaluation.scoring import gt_files
from keras_defusion.evaluation.scoring import images_dir_beside
from keras_defusion.evaluation.scoring import index_by_stem
from keras_defusion.evaluation.scoring import load_map
from keras_defusion.evaluation.scoring import main
from keras_defusion.evaluation.scoring import model_method_name
from keras_defusion.evaluation.scoring import pair_by_stem
from keras_defusion.evaluation.scoring import parse_pred_spec
from keras_defusion.evaluation.scoring import plot_curves
from keras_defusion.evaluation.scoring import resolve_gt_dir
from keras_defusion.evaluation.scoring import write_json
