"""What every task builds on, naming none: the Task base, evaluation report types,
ONNX Runtime helpers (session, letterbox, NMS), quantization, latency, the pyfunc base.
"""
