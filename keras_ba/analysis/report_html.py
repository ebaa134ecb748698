"""The analysis report's `index.html`: tables, figures, overlays.

Example:
>>> _table([{"stage": "conv2", "mean_weight": 0.5}], ["stage", "mean_weight"], digits=2)
'<table><tr><th>stage</th><th>mean_weight</th></tr><tr><td>conv2</td><td>0.50</td></tr></table>'
"""

import html
import re

from keras_ba.analysis.saliency import METHOD_TITLES, OVERLAY_SIDE


def referenced_files(html_path):
    """Relative paths that an HTML file references (`src=` and `href=`).

    Example:
        referenced_files("report/index.html")  # ['attention_curves.png', ...]
    """
    with open(html_path) as file:
        text = file.read()
    links = re.findall(r'(?:src|href)="([^"#]+)"', text)
    return [link for link in links if not re.match(r"^[a-z]+:", link)]


def _table(rows, fields, digits=4):
    head = "".join(f"<th>{html.escape(f)}</th>" for f in fields)
    body = []
    for row in rows:
        cells = []
        for field in fields:
            value = row.get(field)
            if isinstance(value, float):
                value = f"{value:.{digits}f}"
            cells.append(f"<td>{html.escape('' if value is None else str(value))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _figure(name, files, caption):
    if name not in files:
        return ""
    return (
        f'<figure><a href="{name}"><img src="{name}" alt="{html.escape(caption)}"></a>'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def render_html(summary, files):
    """The report's `index.html`; only files in `files` are referenced.

    Example:
        render_html(summary, ["attention_curves.png"])
    """
    files = set(files)
    model, compare, data = summary["model"], summary["compare"], summary["data"]
    title = f"Attention analysis of {model['name']}"
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>",
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}",
        "table{border-collapse:collapse;font-size:13px;margin:1em 0}",
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}",
        "img{max-width:100%}figure{margin:1em 0}figcaption{font-size:13px;color:#555}",
        f".overlays img{{width:{OVERLAY_SIDE}px;image-rendering:pixelated;margin:2px}}",
        "</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<p>",
        f"Model <code>{html.escape(model['path'])}</code>",
    ]
    if model.get("accuracy") is not None:
        parts.append(f" (accuracy on these images {model['accuracy']:.4f})")
    if compare:
        parts.append(f"; compared with <code>{html.escape(compare['path'])}</code>")
        if compare.get("accuracy") is not None:
            parts.append(f" (accuracy {compare['accuracy']:.4f})")
    parts.append(
        f". Data: {html.escape(str(data['source'].get('data')))}, {data['subset']} split, "
        f"{data['images']} images at {data['image_size']} px. Backend {summary['backend']}, "
        f"{summary.get('seconds', 0)} s.</p>"
    )
    parts.append("<h2>Channel attention weights (BAv1 paper, Fig. 4)</h2>")
    parts.append(
        "<p>Mean weight per channel for each class, for the last attention block of each "
        "stage. <em>class spread</em>: mean over channels of the standard deviation across "
        "classes of the class means (how distinguishable the class curves are); "
        "<em>channel std</em>: standard deviation across channels of the mean weight (how "
        "diverse the weights are).</p>"
    )
    parts.append(_figure("attention_curves.png", files, "Per-class mean channel weights"))
    parts.append(_figure("attention_spread.png", files, "Spread across classes and channels"))
    parts.append(
        _table(
            summary["stages"],
            [
                "model",
                "stage",
                "layers",
                "last_layer",
                "class_spread",
                "channel_std",
                "mean_weight",
            ],
        )
    )
    parts.append("<h2>Bridge importance (BAv1 paper, Algorithm 1, Fig. 5)</h2>")
    for item in summary["bridge_importance"]:
        if "skipped" in item:
            parts.append(
                f"<p>{html.escape(item['model'])}: skipped ({html.escape(item['skipped'])}).</p>"
            )
            continue
        parts.append(
            f"<p>{html.escape(item['model'])}: random forests ({item['n_estimators']} trees) "
            f"predict each block's channel weights from its {item['features']} features "
            f"S1..Sn over {item['images']} images; impurity importance summed per feature, "
            f"normalised per block ({item['normalize']}). Sn is the recalibrated feature, the "
            "only one SE sees.</p>"
        )
        parts.append(_figure(item["figure"], files, f"Bridge importance of {item['model']}"))
        parts.append(_table(item["rows"], ["block", *item["feature_names"]], digits=3))
    explanations = summary.get("explanations")
    if explanations:
        methods = ", ".join(METHOD_TITLES[m] for m in explanations["methods"])
        parts.append("<h2>Saliency maps (tf-keras-vis)</h2>")
        parts.append(
            f"<p>{html.escape(methods)} for the predicted class, on layer "
            f"<code>{html.escape(explanations['layer'])}</code>.</p>"
        )
        parts.append(_figure(explanations["figure"], files, "Saliency overlays"))
        for method, names in explanations["overlays"].items():
            images = "".join(
                f'<a href="{n}"><img src="{n}" alt="{method} {i}"></a>'
                for i, n in enumerate(names)
                if n in files
            )
            parts.append(
                f"<p class='overlays'><b>{html.escape(METHOD_TITLES[method])}</b><br>{images}</p>"
            )
    parts.append("<h2>Numbers</h2><ul>")
    for name in sorted(f for f in files if f.endswith((".csv", ".json"))):
        parts.append(f'<li><a href="{name}">{html.escape(name)}</a></li>')
    parts.append("</ul>")
    parts.append(
        _table(
            summary["layers"],
            [
                "model",
                "layer",
                "stage",
                "channels",
                "mean_weight",
                "min_weight",
                "max_weight",
                "class_spread",
                "channel_std",
            ],
        )
    )
    parts.append("</body></html>\n")
    return "\n".join(p for p in parts if p)
