"""Architecture and hyperparameter search on Ray Tune: search-space files (``space``), the
sweep runner with Optuna, ASHA and resume (``runner``), and the written results (``results``).
The space files live in the repository's ``tune/`` folder."""
