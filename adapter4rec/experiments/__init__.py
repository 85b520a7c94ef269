"""Many runs at once and what is made of them: launch.py expands a launcher's sweep into runs (one torchrun
each), studies.py runs a study's rows over seeds and protocols, report.py and report_figures.py turn finished
runs into tables and figures (Fig/), demo.py is `make demo`: the default pretrain -> transfer job end to end."""
