def test_warm(digits_onnx, digits_features_onnx, digits_fused_onnx):
    print(digits_onnx, digits_features_onnx, digits_fused_onnx)
