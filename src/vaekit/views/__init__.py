"""Views of a run: pictures (`plots`), the self-contained HTML report (`report`) and the local
latent explorer (`serve`). A view reads a run directory and its model; it never trains. Layer:
views; it may import everything below it (the run directory, models, evaluation, data, the
foundation), never `vaekit.train`, `vaekit.api` or `vaekit.cli`. The trainer draws its
TensorBoard pictures with `plots`, so training sits above the views
(see tests/test_architecture.py).
"""
