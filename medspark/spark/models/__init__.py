"""The Spark side of model training: one model interface and the modules that use only it.

- `base`: `Model` (fit, transform, save, load, feature_weights, describe, cross_validate),
  `ModelSpec`, `ModelContext`, `Rows`, the engine registry;
- `mllib_engine`, `sklearn_engine`, `torch_engine`: the implementations (MLlib pipelines;
  scikit-learn in Spark tasks; `medspark deep` models);
- `folds`: held-out split and CV folds assigned in Spark by group hash; `FoldSet`;
- `impute`: fold imputers (in tasks, or by Spark aggregates), applied by Spark, reported;
- `tasks`: the Spark-task runner and the staged training split tasks read;
- `selection`: the engine of each candidate, CV through the interface, the leaderboard;
- `scoring`: selection statistics by Spark aggregates, the score columns;
- `evaluation`: held-out predictions, metrics on a bounded sample, plots;
- `artifacts`: the model folder, through pyarrow filesystems;
- `per_group`: `train.per_group`, one model per value of a column.
"""
