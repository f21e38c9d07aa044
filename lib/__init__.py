"""The workbook's library: every notebook is a thin story over these modules, in three floors
(arrows point down only):

1. infrastructure: ``data`` (embedded synthetic set, real loaders, splits, the data-like
   helpers), ``models`` (builders with a ``Normalize`` layer inside), ``train`` (one
   ``fit``/``evaluate`` loop), ``store`` (artifact cache), ``metrics``, ``plots``, ``paths``;
2. methods: ``attacks``, ``evaluate`` (craft once, measure many), ``robustness``,
   ``adversarial_training``, ``transfer/``, ``widgets``;
3. studies (``studies/``): one module per notebook with its recipe and headline checks.
"""
