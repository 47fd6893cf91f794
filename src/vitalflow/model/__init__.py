"""The CNN-LSTM-LSTM: its config, network, tf.data reader, card and predictor (TensorFlow lives here)."""
