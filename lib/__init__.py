"""The workbook's library: every notebook is a thin story over these modules.

Modules: ``data`` (embedded synthetic set, real loaders, splits), ``models`` (builders with a
``Normalize`` layer inside), ``train`` (one ``fit``/``evaluate`` loop), ``store`` (artifact cache),
``plots`` (one house style), ``paths`` (where things live).
"""
