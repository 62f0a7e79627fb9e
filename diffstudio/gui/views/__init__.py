"""One module per place in the main window: Data, Model & schedule, Train, Sample, Runs,
Plugins."""
