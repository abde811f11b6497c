"""Classical corrective-EQ baselines that see only the input's long-term spectrum.

Both predict a correction curve in dB on a frequency grid with its mean removed (tonal
shape, not level), and are scored beside the learned models by ``curve_error_db``.

* ``TargetCurveMatcher``: what iZotope Tonal Balance and matchering do. The target is the
  mean of the training spectra (each with its mean level removed); the correction of an
  input is ``amount * smooth(target - input)`` (boxcar over ``octaves``), mean removed.
  ``CONFIGS`` lists the (octaves, amount) pairs the benchmark reports.
* ``RidgeCurve``: ridge regression from features (1/3-octave band levels, mean removed)
  to the correction curve, in closed form on standardized features with an intercept;
  ``fit_ridge`` picks alpha by the validation error.

Shapes: spectra and curves (N, K) or (B, K) on a grid freqs_hz (K,); features (N, F).
Everything is float64 torch.
"""

from __future__ import annotations

import torch

from mixscale.features.spectrum import remove_mean, smooth_curve

ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0)


def _f64(x) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float64)


def curve_error_db(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """RMS over the grid of the mean-removed difference of two dB curves: (B, K), (B, K) -> (B,)."""
    return remove_mean(_f64(pred) - _f64(true)).square().mean(dim=-1).sqrt()


class TargetCurveMatcher:
    """Match the long-term spectrum to the training split's mean tonal balance."""

    CONFIGS = ((1.0, 0.3), (1.0, 0.5), (2.0, 0.3), (2.0, 0.5))  # (smoothing octaves, amount)

    def __init__(self) -> None:
        self.target_db: torch.Tensor | None = None  # (K,), mean zero

    def fit(self, spectra_db: torch.Tensor) -> "TargetCurveMatcher":
        """spectra_db (N, K): the training items' long-term spectra in dB."""
        spectra_db = _f64(spectra_db)
        if spectra_db.ndim != 2 or spectra_db.shape[0] == 0:
            raise ValueError(f"spectra_db must be (N, K) with N >= 1, got shape {tuple(spectra_db.shape)}")
        self.target_db = remove_mean(spectra_db).mean(dim=0)
        return self

    def correction(self, spectra_db: torch.Tensor, freqs_hz: torch.Tensor, smoothing_octaves: float,
                   amount: float) -> torch.Tensor:
        """Correction curves (B, K) in dB, mean zero, for input spectra_db (B, K) on freqs_hz (K,)."""
        if self.target_db is None:
            raise RuntimeError("TargetCurveMatcher.correction called before fit")
        spectra_db = _f64(spectra_db)
        if spectra_db.shape[-1] != self.target_db.shape[0]:
            raise ValueError(f"spectra_db has {spectra_db.shape[-1]} points, the target has {self.target_db.shape[0]}")
        diff = self.target_db - remove_mean(spectra_db)
        return remove_mean(amount * smooth_curve(diff, freqs_hz, smoothing_octaves))


class RidgeCurve:
    """Ridge regression features (N, F) -> curves (N, K), with standardized features and an intercept."""

    def __init__(self) -> None:
        self.mean: torch.Tensor | None = None  # (F,)
        self.std: torch.Tensor | None = None  # (F,), 1 where a feature is constant
        self.weight: torch.Tensor | None = None  # (F, K)
        self.intercept: torch.Tensor | None = None  # (K,)
        self.alpha: float | None = None

    def fit(self, features: torch.Tensor, curves: torch.Tensor, alpha: float) -> "RidgeCurve":
        """Closed form: W = (Z'Z + alpha I)^-1 Z'(Y - mean Y), Z the standardized features.

        The curves' means over the grid are removed first, so predictions are mean zero.
        """
        X, Y = _f64(features), remove_mean(_f64(curves))
        if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != Y.shape[0] or X.shape[0] == 0:
            raise ValueError(f"need features (N, F) and curves (N, K) with the same N >= 1, "
                             f"got {tuple(X.shape)} and {tuple(Y.shape)}")
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        self.mean = X.mean(dim=0)
        std = X.std(dim=0, unbiased=False)
        self.std = torch.where(std > 1e-12, std, torch.ones_like(std))
        Z = (X - self.mean) / self.std
        self.intercept = Y.mean(dim=0)
        gram = Z.T @ Z + alpha * torch.eye(Z.shape[1], dtype=torch.float64)
        # lstsq, not solve: with alpha = 0 and collinear features the Gram matrix is singular.
        self.weight = torch.linalg.lstsq(gram, Z.T @ (Y - self.intercept)).solution
        self.alpha = float(alpha)
        return self

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """Curves (B, K), mean zero, for features (B, F)."""
        if self.weight is None:
            raise RuntimeError("RidgeCurve.predict called before fit")
        X = _f64(features)
        if X.shape[-1] != self.mean.shape[0]:
            raise ValueError(f"features have {X.shape[-1]} columns, the model was fitted on {self.mean.shape[0]}")
        return remove_mean((X - self.mean) / self.std @ self.weight + self.intercept)


def fit_ridge(train_X: torch.Tensor, train_Y: torch.Tensor, valid_X: torch.Tensor, valid_Y: torch.Tensor,
              alphas=ALPHAS) -> tuple[RidgeCurve, float, dict[float, float]]:
    """Fit one ``RidgeCurve`` per alpha on the training split; keep the one with the lowest
    mean ``curve_error_db`` on the validation split.

    Returns (model, chosen alpha, {alpha: validation error in dB}). The earliest alpha
    wins a tie.
    """
    if len(alphas) == 0:
        raise ValueError("alphas must hold at least one value")
    best, scores = None, {}
    for alpha in alphas:
        model = RidgeCurve().fit(train_X, train_Y, alpha)
        scores[float(alpha)] = float(curve_error_db(model.predict(valid_X), valid_Y).mean())
        if best is None or scores[float(alpha)] < scores[best.alpha]:
            best = model
    return best, best.alpha, scores
