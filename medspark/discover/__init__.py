"""Knowledge discovery, the Spark-free part: statistics from aggregates, rule pruning, robust
outlier models, the run summary and its plots (the Spark layer is `medspark.spark.discover`).

| module | what |
|---|---|
| `config` | `DiscoverSettings`, the `discover:` section |
| `request` | the run's input (lake features or a table), checked before Spark starts |
| `fdr` | Benjamini-Hochberg q-values |
| `ranks` | Mann-Whitney / Kruskal-Wallis from binned counts; t, ANOVA, effect sizes from moments |
| `trend` | Theil-Sen slope and Mann-Kendall test of a per-period series |
| `drift` | PSI and KS from binned counts; categorical mix drift |
| `enrichment` | label enrichment in clusters (Fisher, chi-square, Welch), rule binomial test |
| `rules` | rule items and pruning of redundant rules |
| `clusters` | standardised mean differences, silhouettes from aggregates, adjusted Rand, k choice |
| `correlation` | strongly correlated pairs, redundancy groups, representatives |
| `outliers` | robust Mahalanobis (MCD) / IsolationForest scorer fitted on a sample |
| `summary`, `plots` | summary.json entries and sentences; PNG plots |

Kept import-light: `medspark.config` imports `config` from here.
"""
