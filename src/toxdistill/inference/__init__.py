"""Inference: the one Predictor (torch, ONNX Runtime or OpenVINO) and reading export folders; making exports is
``toxdistill.export`` and measuring them ``toxdistill.benchmark``, the layers above."""
