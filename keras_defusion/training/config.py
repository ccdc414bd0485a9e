"""Training hyperparameters: a typed dataclass with named presets.

The full config is written as `config.json` beside every run's checkpoints.
"""

import dataclasses
from typing import Optional
from typing import Union

from keras_defusion.data.augmentation import DEFAULT_RESIZE_METHODS
from keras_defusion.data.augmentation import Photometric
from keras_defusion.data.augmentation import SyntheticDefocus
from keras_defusion.data.augmentation import check_resize_methods
from keras_defusion.models.defusionnet.presets import MODEL_PRESETS

# The methods the `scratch` and `phone` presets draw from (the shipped models'
# runs); "corner_bilinear" was added for fine-tuning (model cards).
PRESET_RESIZE_METHODS = ("antialiased", "bilinear", "area", "nearest", "bicubic")

# The paper trains with Caffe, whose cross-entropy is summed over the pixels
# of the batch; Keras averages it. The gradient of the mean is the gradient of
# the sum divided by N*H*W, so the paper's SGD learning rate 1e-8 becomes
# 1e-8 * N*H*W here (4 x 320 x 320 pixels: 4.1e-3); `summed_learning_rate`.
PAPER_BATCH = 4
PAPER_SIZE = 320
# The largest training crop side (the paper trains at 320).
MAX_CROP_SIZE = 1024

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("step", "cosine", "constant")
DISTRIBUTIONS = ("auto", "default", "mirrored", "multi_worker")


@dataclasses.dataclass
class TrainingConfig:
    """Everything a training run needs besides its data and output folders.

    Attributes:
        model_preset: the `DeFusionNet` preset trained.
        model_overrides: `DeFusionNetConfig` fields overriding the preset.
        backbone_weights: the encoder's initial weights: "imagenet", None or
            a local weights file. To fine-tune a trained model instead, pass
            `init_model` (a `.keras` file).
        init_model: a `.keras` file whose weights start the run (fine-tuning).
        image_size: side of the square training crops.
        batch_size: the global batch (per replica x replicas).
        steps: optimizer steps in all.
        steps_per_epoch: steps between validations, checkpoints and log rows.
        optimizer: "sgd", "adam" or "adamw".
        learning_rate: the initial learning rate (for the mean loss).
            Derived when `summed_learning_rate` is set.
        momentum: SGD momentum.
        weight_decay: decoupled weight decay (the optimizer's
            `weight_decay`), applied as w -= lr * weight_decay * w per step.
            Derived when `summed_weight_decay` is set.
        summed_learning_rate: a rate for a loss summed over the batch's
            pixels, as Caffe sums it and the paper quotes it. When set,
            `learning_rate` = summed_learning_rate * N*H*W (N = batch_size,
            H = W = image_size), so the rate follows the batch and the crop.
        summed_weight_decay: Caffe's L2 decay on the summed loss. When set,
            `weight_decay` = summed_weight_decay / (N*H*W).
        schedule: "step" (x drop_factor at drop_at * steps), "cosine" or
            "constant".
        drop_at: fraction of the steps where the step schedule drops.
        drop_factor: the step schedule's factor.
        warmup_steps: linear warm-up at the start.
        clipnorm: global gradient-norm clipping; None for none.
        lambda_fused: Eq. 6's weight of the fused map.
        lambda_side: Eq. 6's lambda_i^j: one weight for every side output, or
            a dict from output name ("step{j}_out{i}") to weight (others 1).
        iou_weight: weight of a soft-IoU term added to every output's
            cross-entropy (`keras_defusion.training.losses.BCEIoULoss`; 0,
            Eq. 6 alone, by default).
        synthetic_steps: steps on synthetic defocus before the real data.
        val_fraction: share of the training pairs carved out for validation
            when no validation folder is given (0 for none).
        val_size: side of the square the validation photos are resized to
            (whole, not cropped) for training's check and the choice of the
            best checkpoint; None means `image_size`. Set it to the size the
            model will run at: a model trained on small crops can score best
            at a larger size, and the best checkpoint differs by size.
        polarity: mask polarity of the data ("blur-white" for CUHK).
        max_rotation, scale_range, flip: augmentation (section 3.3).
        resize_methods: how training photos are downscaled, one drawn per
            photo (`keras_defusion.data.augmentation.RESIZE_METHODS`); all of them make
            the model independent of the resampling a runtime uses.
        synthetic_defocus: share of the training crops given an extra
            pillbox-blurred region, added to their masks
            (`keras_defusion.data.SyntheticDefocus`; 0, off, by default).
        color_jitter, noise_stddev, jpeg_quality: photometric augmentation
            of the training crops (`keras_defusion.data.Photometric`; off by
            default, as in the paper).
        teacher_maps: a folder of a teacher model's maps of the training
            photos (`keras-defusion detect TRAIN/images --model TEACHER --out
            DIR` writes them to DIR/maps): each training crop's target becomes
            `(1 - teacher_weight) * mask + teacher_weight * map`
            (distillation; validation keeps the masks). None, the masks
            alone, by default.
        teacher_weight: the teacher map's share of the target, in (0, 1].
        mixed_precision: mixed_float16 compute on GPUs; outputs and saved
            models stay float32.
        distribution: "auto" (multi-worker from TF_CONFIG, mirrored over
            several GPUs, default otherwise), or one of those by name.
        seed: seeds the validation split (`val_fraction`), data order,
            augmentation and initialisation.
        deterministic: also enable TF's deterministic ops (slower).
    """

    model_preset: str = "mobile"
    model_overrides: dict = dataclasses.field(default_factory=dict)
    backbone_weights: Optional[str] = "imagenet"
    init_model: Optional[str] = None
    image_size: int = 320
    batch_size: int = 4
    steps: int = 10000
    steps_per_epoch: int = 250
    optimizer: str = "sgd"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    summed_learning_rate: Optional[float] = None
    summed_weight_decay: Optional[float] = None
    schedule: str = "step"
    drop_at: float = 0.5
    drop_factor: float = 0.1
    warmup_steps: int = 0
    clipnorm: Optional[float] = None
    lambda_fused: float = 1.0
    lambda_side: Union[float, dict] = 1.0
    iou_weight: float = 0.0
    synthetic_steps: int = 0
    val_fraction: float = 0.0
    val_size: Optional[int] = None
    polarity: str = "blur-white"
    max_rotation: float = 15.0
    scale_range: tuple = (1.0, 1.25)
    flip: bool = True
    resize_methods: tuple = DEFAULT_RESIZE_METHODS
    synthetic_defocus: float = 0.0
    color_jitter: float = 0.0
    noise_stddev: float = 0.0
    jpeg_quality: Optional[int] = None
    teacher_maps: Optional[str] = None
    teacher_weight: float = 0.5
    mixed_precision: bool = False
    distribution: str = "auto"
    seed: int = 0
    deterministic: bool = False

    def __post_init__(self):
        self.scale_range = tuple(self.scale_range)
        self.resize_methods = check_resize_methods(self.resize_methods)
        _ = self.photometric  # Photometric validates the three fields
        _ = self.synthetic_defocus_augmentation
        if self.model_preset not in MODEL_PRESETS:
            raise ValueError(
                f"unknown model preset {self.model_preset!r}; choose from "
                f"{sorted(MODEL_PRESETS)}"
            )
        for name, allowed in (
            ("optimizer", OPTIMIZERS),
            ("schedule", SCHEDULES),
            ("distribution", DISTRIBUTIONS),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"{name} must be one of {allowed}, got {getattr(self, name)!r}"
                )
        for name in ("image_size", "batch_size", "steps", "steps_per_epoch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.val_size is not None and not 1 <= self.val_size <= MAX_CROP_SIZE:
            raise ValueError(
                f"val_size (--val-size) must be in [1, {MAX_CROP_SIZE}], got {self.val_size}")
        if self.image_size > MAX_CROP_SIZE:
            raise ValueError(
                f"image_size (the crop side, --crop-size) must be at most {MAX_CROP_SIZE}, "
                f"got {self.image_size}: a batch of such crops does not fit in memory")
        self.steps_per_epoch = min(self.steps_per_epoch, self.steps)
        if self.steps % self.steps_per_epoch:
            raise ValueError(
                f"steps ({self.steps}) must be a multiple of steps_per_epoch "
                f"({self.steps_per_epoch}): training runs whole epochs"
            )
        pixels = self.batch_size * self.image_size * self.image_size
        if self.summed_learning_rate is not None:
            self.learning_rate = self.summed_learning_rate * pixels
        if self.summed_weight_decay is not None:
            self.weight_decay = self.summed_weight_decay / pixels
        if not 0 <= self.iou_weight <= 10:
            raise ValueError(f"iou_weight (--iou-weight) must be in [0, 10], got {self.iou_weight}")
        if not 0 < self.teacher_weight <= 1:
            raise ValueError(
                f"teacher_weight (--teacher-weight) must be in (0, 1], got {self.teacher_weight}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError("val_fraction must be in [0, 1)")

    @property
    def photometric(self):
        """The photometric augmentation, a `keras_defusion.data.Photometric`."""
        return Photometric(self.color_jitter, self.noise_stddev, self.jpeg_quality)

    @property
    def synthetic_defocus_augmentation(self):
        """The synthetic defocus of training crops, a `keras_defusion.data.SyntheticDefocus`."""
        return SyntheticDefocus(self.synthetic_defocus)

    def to_dict(self):
        values = dataclasses.asdict(self)
        values["scale_range"] = list(self.scale_range)
        values["resize_methods"] = list(self.resize_methods)
        return values

    @classmethod
    def from_dict(cls, values):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown training config fields: {sorted(unknown)}")
        return cls(**values)


TRAINING_PRESETS = {
    # Section 3.3: SGD, momentum 0.9, batch 4, 10k iterations, learning rate
    # x0.1 at 5k, ImageNet VGG16. The rate and the decay are rescaled from
    # Caffe's summed loss (see above): lr = 1e-8 * N*H*W; Caffe's L2
    # decay adds 5e-4 * w to the summed gradient, i.e. 5e-4 / (N*H*W) * w to
    # the mean one, so the decay keeps the paper's (negligible) strength as a
    # decoupled weight decay of 5e-4 / (N*H*W). Both follow --batch-size and
    # --image-size (summed_*); an explicit --lr replaces the derived rate.
    "paper": TrainingConfig(
        model_preset="paper",
        backbone_weights="imagenet",
        image_size=PAPER_SIZE,
        batch_size=PAPER_BATCH,
        steps=10000,
        steps_per_epoch=500,
        optimizer="sgd",
        summed_learning_rate=1e-8,
        momentum=0.9,
        summed_weight_decay=5e-4,
        schedule="step",
        drop_at=0.5,
        drop_factor=0.1,
    ),
    # For a CPU: the 1/4-resolution FFRM, smaller crops and AdamW, which
    # needs no learning-rate rescaling and converges in far fewer steps than
    # SGD at 1e-8-equivalent rates.
    "mobile": TrainingConfig(
        model_preset="mobile",
        backbone_weights="imagenet",
        image_size=224,
        batch_size=8,
        steps=3000,
        steps_per_epoch=150,
        optimizer="adamw",
        learning_rate=3e-4,
        weight_decay=1e-4,
        schedule="cosine",
        warmup_steps=100,
        clipnorm=1.0,
        val_fraction=0.1,
    ),
    # From scratch (no ImageNet weights) on a CPU: VGG16-BN at half width and
    # a higher AdamW rate, which batch norm allows.
    "scratch": TrainingConfig(
        model_preset="scratch",
        backbone_weights=None,
        image_size=192,
        batch_size=8,
        steps=2400,  # the shipped model's run: 82 minutes on a 2-core CPU
        steps_per_epoch=150,
        optimizer="adamw",
        learning_rate=2e-3,
        weight_decay=1e-4,
        schedule="cosine",
        warmup_steps=100,
        clipnorm=1.0,
        synthetic_steps=0,
        val_fraction=0.1,
        # Every resampling method, so that phone runtimes, which resize
        # without antialiasing, get the same maps (README, "Phones"); the
        # shipped runs predate "corner_bilinear", used in fine-tuning only.
        resize_methods=PRESET_RESIZE_METHODS,
    ),
    # The phone model from scratch: MobileNetV2 trains ~6x faster per step
    # than the half-width VGG16-BN, so the run is longer and the batch larger.
    "phone": TrainingConfig(
        model_preset="phone",
        backbone_weights=None,
        image_size=224,
        batch_size=16,
        steps=3000,  # ~75 minutes on a 2-core CPU
        steps_per_epoch=200,
        optimizer="adamw",
        learning_rate=2e-3,
        weight_decay=1e-4,
        schedule="cosine",
        warmup_steps=200,
        clipnorm=1.0,
        val_fraction=0.1,
        resize_methods=PRESET_RESIZE_METHODS,
    ),
}


def get_training_config(preset, **overrides):
    """The named training preset with `TrainingConfig` fields overridden."""
    if preset not in TRAINING_PRESETS:
        raise ValueError(
            f"unknown training preset {preset!r}; choose from {sorted(TRAINING_PRESETS)}"
        )
    values = TRAINING_PRESETS[preset].to_dict()
    # An explicit rate or decay replaces the preset's derived one.
    if "learning_rate" in overrides:
        values["summed_learning_rate"] = None
    if "weight_decay" in overrides:
        values["summed_weight_decay"] = None
    values.update(overrides)
    return TrainingConfig.from_dict(values)
