import sys

from keras_ba.cli import main

sys.exit(main())
