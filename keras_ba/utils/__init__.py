"""Small helpers every other package may use: lazy package facades
(`lazy`), atomic files (`files`), running work under the TensorFlow backend
in a child process (`tf_process`).

Nothing here imports another keras_ba package.
"""
