"""Every plot and picture: sample grids and curves (``samples``), training diagnostics
(``training``) and the family-specific figures (``flows``, ``ebm``, ``cyclegan``)."""
