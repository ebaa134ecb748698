"""Small helpers shared by keras_ba's command-line workflows (no Keras imports)."""
