# Time R cmprsk::crr with 10 covariates on the design of benchmarks/finegray.py (10 N(0,1)
# covariates, times in days, about 30% events of interest and 20% competing events), default
# settings (gtol = 1e-6, maxiter = 10). Run once from the repository root:
#
#   Rscript benchmarks/finegray_crr.R
#
# The figures are quoted as constants in benchmarks/finegray.py (R is not a runtime dependency).
# crr's estimation loops are O(n^2) per iteration, but its variance (crrvv) has a triple loop over
# censoring times x failures x subjects: on 20,000 rows it ran for over 8 minutes without finishing
# here. So the 20,000-row baseline is crr(variance = FALSE), and the full fit (with its variance) is
# timed at 2,000 and 4,000 rows to show its growth.
suppressPackageStartupMessages(library(cmprsk))
design <- function(n) {
  set.seed(1)
  X <- matrix(rnorm(n * 10), n, 10)
  t <- ceiling(rexp(n, 0.1 * exp(X %*% seq(-0.3, 0.3, length.out = 10))) * 365)
  e <- sample(0:2, n, TRUE, prob = c(0.5, 0.3, 0.2))
  list(t = t, e = e, X = X)
}
d <- design(20000)
el <- system.time(crr(d$t, d$e, d$X, variance = FALSE))[["elapsed"]]
cat(sprintf("crr(variance = FALSE), n = 20000: %.2f s\n", el))
for (n in c(2000, 4000)) {
  d <- design(n)
  el <- system.time(crr(d$t, d$e, d$X))[["elapsed"]]
  cat(sprintf("crr (with variance), n = %d: %.2f s\n", n, el))
}
