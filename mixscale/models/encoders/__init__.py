"""Encoders: one module each, all mapping a batch of features to an embedding (B, D).

Spectrogram encoders (``cnn``, ``rescnn``, ``crnn``, ``ast``) read log-mel views
(B, K, M, F) from ``frontend.SpectrogramFrontEnd``; ``mlp`` reads descriptor vectors
(B, K) from ``frontend.DescriptorFrontEnd``. Each class says which in ``input_kind``.
"""
