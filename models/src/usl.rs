//! Universal Scalability Law: bounded Levenberg–Marquardt fit and predictions.
