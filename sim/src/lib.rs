//! contrail-sim: a local AWS Lambda execution environment.
