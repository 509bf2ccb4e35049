"""Walking a model's layers, nested models included."""


def iter_layers(model):
    """Yield `model` and every layer nested inside it, each once, depth first."""
    seen = set()
    stack = [model]
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        yield layer
        stack.extend(reversed(getattr(layer, "layers", None) or []))
