"""Inference: the one Predictor (torch or ONNX), ONNX export, and the speed benchmark."""
