"""Deep learning in pure PyTorch (no Spark): architectures (`nets`), the input transform
(`transform`), sharded Parquet datasets (`data`), the per-rank DDP training loop (`loop`),
scoring and embedding with a saved model (`infer`) and the `deep:` settings (`config`).

Only `config` is imported by medspark's settings; everything else needs torch
(`pip install 'medspark[deep]'`). The Spark side lives in `medspark.spark.deep_*`.
"""

INSTALL_HINT = "PyTorch is not installed: pip install 'medspark[deep]'"


def torch_available() -> bool:
    """True when torch can be imported (checked before Spark starts)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True
