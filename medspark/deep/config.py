"""`deep:` settings: architecture and sizes, input, optimisation, augmentation, distribution.

```yaml
deep:
  arch: cnn                  # cnn | resnet18 | autoencoder | gru
  task: classification       # classification | regression (autoencoder: reconstruction)
  source: preprocessed       # preprocessed (imaging config's pipeline) | pixels (as ingested)
  input_size: 64             # every plane is resized to input_size x input_size
  channels: 1                # 1: grey (colour planes become luma); 3: grey planes repeated
  normalize: minmax          # per image: minmax -> [0, 1] | zscore | none
  cnn: {widths: [16, 32, 64], dropout: 0.1}
  epochs: 20
  batch_size: 64             # global: each of num_processes processes takes batch_size / n
  optimizer: {name: adamw, lr: 0.001, weight_decay: 0.0001}
  schedule: {name: cosine}
  augment: {rotation_deg: 10, flip_horizontal: 0.5}   # imaging.augment's parameters
  num_processes: 2
  device: auto               # auto: CUDA when present (nccl), else CPU (gloo)
  patience: 5
```

Validated by pydantic with `extra="forbid"`, so a typo stops the job before Spark starts. The
held-out test split and the grouping column come from `train:` (`test_size`, `seed`,
`group_col`), so a deep model is evaluated on the same held-out patients as `medspark train`;
`validation_folds` picks the validation groups among the training ones with the same module.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator, model_validator

from medspark.steps import AugmentConfig

Arch = Literal["cnn", "resnet18", "autoencoder", "gru"]
ARCHS: tuple[str, ...] = ("cnn", "resnet18", "autoencoder", "gru")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CNNSettings(_Strict):
    """Small CNN: one conv-BN-ReLU-maxpool block per width, global average pool, linear head.
    The pooled vector (last width) is the embedding."""

    widths: list[PositiveInt] = Field(default_factory=lambda: [16, 32, 64], min_length=1)
    dropout: float = Field(0.1, ge=0, lt=1, description="before the linear head")
    pool: Literal["avg", "max"] = Field(
        "avg", description="global pooling: max suits labels that mean 'a small lesion "
        "somewhere in the image'")


class ResNetSettings(_Strict):
    """ResNet-18-style network (BasicBlocks, random init). `width` is the first stage's
    channels (64 in ResNet-18; smaller is faster); each later stage doubles it."""

    width: PositiveInt = 64
    blocks: list[PositiveInt] = Field(default_factory=lambda: [2, 2, 2, 2], min_length=1,
                                      description="BasicBlocks per stage ([2, 2, 2, 2] = 18)")
    dropout: float = Field(0.0, ge=0, lt=1)


class AutoencoderSettings(_Strict):
    """Convolutional autoencoder: stride-2 convs per width down to a `latent_dim` bottleneck
    (the embedding), mirrored transposed convs up; its reconstruction error is an anomaly
    score. input_size must be divisible by 2 ** len(widths)."""

    widths: list[PositiveInt] = Field(default_factory=lambda: [16, 32, 64], min_length=1)
    latent_dim: PositiveInt = 32


class GRUSettings(_Strict):
    """GRU over the per-slice embeddings of a series (slices ordered by `slice_position`),
    trained end to end with a small CNN slice encoder; one prediction per series."""

    encoder_widths: list[PositiveInt] = Field(default_factory=lambda: [16, 32], min_length=1)
    hidden: PositiveInt = 64
    layers: PositiveInt = 1
    bidirectional: bool = False
    dropout: float = Field(0.1, ge=0, lt=1)
    max_slices: PositiveInt = Field(64, description="longer series are subsampled evenly")
    pool: Literal["avg", "max"] = Field("avg", description="the slice encoder's global pooling")
    readout: Literal["last", "max", "mean"] = Field(
        "last", description="what the head reads: the last hidden state, or the max / mean "
        "of the GRU outputs over the slices (max: a finding on any slice)")
    norm: Literal["layer", "none"] = Field(
        "layer", description="LayerNorm on each slice embedding before the GRU (none: the "
        "raw pooled features, whose shared offset stalls training; models saved before this "
        "setting existed build with none)")


class OptimizerSettings(_Strict):
    """torch.optim optimiser."""

    name: Literal["adam", "adamw", "sgd"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd only")


class ScheduleSettings(_Strict):
    """Learning-rate schedule, stepped once per epoch after an optional linear warm-up."""

    name: Literal["none", "cosine", "step", "plateau"] = "cosine"
    warmup_epochs: int = Field(0, ge=0)
    step_size: PositiveInt = Field(10, description="step: epochs between decays")
    gamma: float = Field(0.1, gt=0, le=1, description="step / plateau: decay factor")
    min_lr: float = Field(0.0, ge=0, description="cosine: final learning rate")


class DeepSettings(_Strict):
    """What `medspark deep train` fits, on which pixels, and how it is distributed."""

    arch: Arch = "cnn"
    task: Literal["classification", "regression"] = Field(
        "classification", description="ignored by the autoencoder (reconstruction)")
    label: str | None = Field(None, description="label column; default train.label")
    source: Literal["preprocessed", "pixels"] = Field(
        "preprocessed", description="preprocessed: preprocessed/pipeline=<hash of the imaging "
        "config>; pixels: pixels/ as ingested (HU for CT), joined with the catalog")
    modalities: list[str] = Field(default_factory=list,
                                  description="source pixels: only these modalities; empty: all")
    input_size: PositiveInt = Field(64, description="planes are resized to this square size")
    channels: Literal[1, 3] = 1
    normalize: Literal["minmax", "zscore", "none"] = Field(
        "minmax", description="per-image intensity scaling after resizing")
    cnn: CNNSettings = Field(default_factory=CNNSettings)
    resnet18: ResNetSettings = Field(default_factory=ResNetSettings)
    autoencoder: AutoencoderSettings = Field(default_factory=AutoencoderSettings)
    gru: GRUSettings = Field(default_factory=GRUSettings)
    epochs: PositiveInt = 20
    batch_size: PositiveInt = Field(64, description="global batch size, split over processes")
    optimizer: OptimizerSettings = Field(default_factory=OptimizerSettings)
    schedule: ScheduleSettings = Field(default_factory=ScheduleSettings)
    augment: AugmentConfig | None = Field(
        None, description="imaging.augment's parameters, applied on the fly: one fresh seeded "
        "variant of every training image per epoch (n_copies does not apply)")
    validation_folds: int = Field(
        5, ge=2, description="validation = one of this many patient-grouped folds of the "
        "training split (early stopping watches its loss)")
    patience: int = Field(5, ge=0, description="epochs without a better validation loss "
                          "before stopping; 0: never stop early")
    min_delta: float = Field(0.0, ge=0, description="smallest decrease that counts as better")
    num_processes: PositiveInt = Field(1, description="TorchDistributor processes (DDP ranks)")
    local_mode: bool = Field(True, description="TorchDistributor local_mode: processes on the "
                             "driver (True) or in barrier tasks on the executors (False)")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto: CUDA when the process sees a GPU (nccl), else CPU (gloo)")
    threads: PositiveInt | None = Field(
        None, description="torch threads per process; default: cores / num_processes")
    seed: int = Field(0, description="weights, data order, dropout and augmentation")
    shuffle_buffer: PositiveInt = Field(
        1024, description="decoded training images each process holds to shuffle across "
        "row groups (bounds memory with the one row group being read)")
    loader_workers: int = Field(0, ge=0, description="DataLoader worker processes per rank "
                                "decoding images (0: in the training process)")
    predict_batch_size: PositiveInt = Field(256, description="rows per predict_batch_udf batch")
    keep_checkpoints: PositiveInt = Field(1, description="epoch checkpoints kept while training")
    resume: bool = Field(True, description="continue an unfinished run of the same model id "
                         "from its last epoch checkpoint")

    @field_validator("augment")
    @classmethod
    def _no_copies(cls, v: AugmentConfig | None) -> AugmentConfig | None:
        if v is not None and "n_copies" in v.model_fields_set:
            raise ValueError("augment.n_copies does not apply on the fly: every training image "
                             "gets one fresh variant per epoch")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> DeepSettings:
        if self.batch_size < self.num_processes:
            raise ValueError(f"batch_size {self.batch_size} is smaller than num_processes "
                             f"{self.num_processes}")
        if self.arch == "autoencoder":
            factor = 2 ** len(self.autoencoder.widths)
            if self.input_size % factor:
                raise ValueError(f"autoencoder: input_size {self.input_size} must be divisible "
                                 f"by 2 ** len(widths) = {factor}")
        return self

    @property
    def objective(self) -> str:
        """classification | regression | reconstruction."""
        return "reconstruction" if self.arch == "autoencoder" else self.task

    def architecture(self, n_outputs: int) -> dict[str, Any]:
        """The JSON-able spec `medspark.deep.nets.build_model` builds the network from."""
        section = getattr(self, self.arch).model_dump(mode="json")
        return {"arch": self.arch, "in_channels": self.channels, "input_size": self.input_size,
                "n_outputs": int(n_outputs), **section}

    def transform(self) -> dict[str, Any]:
        """What every image goes through before the network (also at prediction time)."""
        return {"input_size": self.input_size, "channels": self.channels,
                "normalize": self.normalize}
