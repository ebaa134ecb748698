"""BA model builders in keras.applications style, and their backbones.

Classifiers (`BAResNet50()`, `BAEfficientNetB0()`, ...) are a backbone
(`BAResNetBackbone`, `BAEfficientNetBackbone`, `BAMobileNetV3Backbone`, with
`pyramid_outputs` for detection and segmentation heads) plus a small head.

Example:
>>> from keras_ba.applications import BAResNet
>>> model = BAResNet([1, 1], [8, 16], block_type="basic", stem="cifar",
...                  stem_filters=8, reduction=4, input_shape=(16, 16, 3), classes=10)
>>> model.get_layer("conv2_block1_ba").name, model.output_shape
('conv2_block1_ba', (None, 10))
"""

from keras_ba.utils.lazy import lazy_exports

# Family modules (`keras_ba.applications.resnet`, ...) import as submodules;
# names are imported on first use, so that reading the table of named models
# (`registry`) does not import Keras.
__getattr__, __dir__, __all__ = lazy_exports(
    "keras_ba.applications",
    {
        "BAEfficientNet": "keras_ba.applications.efficientnet",
        "BAEfficientNetB0": "keras_ba.applications.efficientnet",
        "BAEfficientNetB1": "keras_ba.applications.efficientnet",
        "BAEfficientNetB2": "keras_ba.applications.efficientnet",
        "BAEfficientNetB3": "keras_ba.applications.efficientnet",
        "BAEfficientNetB4": "keras_ba.applications.efficientnet",
        "BAEfficientNetB5": "keras_ba.applications.efficientnet",
        "BAEfficientNetB6": "keras_ba.applications.efficientnet",
        "BAEfficientNetB7": "keras_ba.applications.efficientnet",
        "BAEfficientNetBackbone": "keras_ba.applications.efficientnet",
        "BAMobileNetV3": "keras_ba.applications.mobilenet_v3",
        "BAMobileNetV3Backbone": "keras_ba.applications.mobilenet_v3",
        "BAMobileNetV3Large": "keras_ba.applications.mobilenet_v3",
        "BAMobileNetV3Small": "keras_ba.applications.mobilenet_v3",
        "BAResNeXt101_32x4d": "keras_ba.applications.resnext",
        "BAResNeXt101_32x8d": "keras_ba.applications.resnext",
        "BAResNeXt50_32x4d": "keras_ba.applications.resnext",
        "BAResNet": "keras_ba.applications.resnet",
        "BAResNet101": "keras_ba.applications.resnet",
        "BAResNet152": "keras_ba.applications.resnet",
        "BAResNet18": "keras_ba.applications.resnet",
        "BAResNet34": "keras_ba.applications.resnet",
        "BAResNet50": "keras_ba.applications.resnet",
        "BAResNetBackbone": "keras_ba.applications.resnet",
        "BACSWin": "keras_ba.applications.cswin",
        "BACSWinBackbone": "keras_ba.applications.cswin",
        "BACSWinTiny": "keras_ba.applications.cswin",
        "BAPVT": "keras_ba.applications.pvt",
        "BAPVTBackbone": "keras_ba.applications.pvt",
        "BAPVTSmall": "keras_ba.applications.pvt",
        "BAPVTTiny": "keras_ba.applications.pvt",
        "BARegNetY": "keras_ba.applications.regnet",
        "BARegNetY004": "keras_ba.applications.regnety",
        "BARegNetY008": "keras_ba.applications.regnety",
        "BARegNetY016": "keras_ba.applications.regnety",
        "BARegNetY032": "keras_ba.applications.regnety",
        "BARegNetY040": "keras_ba.applications.regnety",
        "BARegNetYBackbone": "keras_ba.applications.regnet",
        "BASwinTransformer": "keras_ba.applications.swin",
        "BASwinTransformerClassifier": "keras_ba.applications.swin",
        "BASwinTransformerSmall": "keras_ba.applications.swin",
        "BASwinTransformerTiny": "keras_ba.applications.swin",
        "Backbone": "keras_ba.applications.backbone",
        "get_model_builder": "keras_ba.applications.registry",
        "list_models": "keras_ba.applications.registry",
        "preprocess_input": "keras_ba.applications.preprocessing",
        **{
            f"{module}": f"keras_ba.applications.{module}"
            for module in (
                "blocks",
                "efficientnet",
                "hub",
                "mobilenet_v3",
                "registry",
                "resnet",
                "resnext",
            )
        },
    },
)
