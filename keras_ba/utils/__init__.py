"""Small helpers every other package may use: lazy package facades
(`lazy`), running work under the TensorFlow backend in a child process
(`tf_process`), one-writer locks on folders (`locking`), and weights files
that never leave a half-written file or a crash at exit (`weights_files`).

Nothing here imports another keras_ba package.
"""
