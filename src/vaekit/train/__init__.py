"""Training: the one loop (`loop.Trainer`) and its parts, one file each: set-up (`setup`), the
loss as a module (`loss`), checkpoints and the run directory (`checkpoint`, `saving`), fault
recovery (`faults`), reporting (`reporting`, `tensorboard`), signals, schedules, the weight
average, the optimiser, several processes (`distributed`); readying data for a config
(`prepare`); and fitting a prior to a trained run's codes, a second training stage
(`fit_prior`). Layer: training, above the views (the trainer draws TensorBoard's pictures with
`vaekit.views.plots`); it may import every layer below, never `vaekit.api` or `vaekit.cli`
(see tests/test_architecture.py).
"""
