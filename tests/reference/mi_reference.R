# Golden values for epi_spineage.stats.pool_rubin (Rubin's rules, Barnard-Rubin df) from R mice::pool.
# Run once, from the repository root:
#
#   Rscript tests/reference/mi_reference.R
#
# Writes mi_reference.json. Each case holds the per-imputation estimates and variances that mice
# pooled (so the test needs no R and no imputation), the complete-data df mice used (dfcom), and
# mice's pooled table (summary(pool(.), conf.int = TRUE), type "all").
#   cox:     mice(m = 5) on 500 participants with two incomplete covariates, coxph on each set.
#            mice:::get.dfcom gives a coxph fit dfcom = nevent - length(coef) (broom's glance has
#            no df.residual for coxph; see mice's get.dfcom), which is what we match.
#   lm:      mice(m = 7) on the same data, lm on each set: dfcom = df.residual = n - 4.
#   scalar_inf, scalar_small, scalar_nob: pool.scalar on fixed inputs with dfcom = Inf,
#            dfcom = 20 - 3, and a between-imputation variance of 0 (lambda floored at 1e-4).
suppressPackageStartupMessages({
  library(mice)
  library(survival)
  library(jsonlite)
})

out_dir <- "tests/reference"
versions <- list(R = R.version.string, mice = as.character(packageVersion("mice")),
                 survival = as.character(packageVersion("survival")))

set.seed(2026)
n <- 500
d <- data.frame(x = rnorm(n), z = rnorm(n), w = rbinom(n, 1, 0.4))
lp <- 0.5 * d$x + 0.3 * d$z + 0.4 * d$w
tt <- rexp(n, 0.1 * exp(lp)); tc <- runif(n, 2, 10)
d$time <- pmin(tt, tc); d$status <- as.integer(tt <= tc)
d$z[rbinom(n, 1, plogis(-1 + d$status)) == 1] <- NA
d$w[rbinom(n, 1, 0.15) == 1] <- NA
d$H <- nelsonaalen(d, time, status)

per_fit <- function(fits, coef_fun, var_fun) {
  list(estimates = lapply(fits, function(f) unname(coef_fun(f))),
       variances = lapply(fits, function(f) unname(var_fun(f))))
}
pooled_table <- function(p) {
  s <- summary(p, type = "all", conf.int = TRUE)
  list(term = as.character(s$term), estimate = s$estimate, std_error = s$std.error, statistic = s$statistic,
       df = s$df, p_value = s$p.value, ci_low = s[["2.5 %"]], ci_high = s[["97.5 %"]], riv = s$riv,
       lambda = s$lambda, fmi = s$fmi, ubar = s$ubar, b = s$b, t = s$t, dfcom = s$dfcom)
}

imp <- mice(d, m = 5, seed = 11, printFlag = FALSE)
fit_cox <- with(imp, coxph(Surv(time, status) ~ x + z + w))
p_cox <- pool(fit_cox)
fits <- getfit(fit_cox)
cox <- c(list(name = "cox", nevent = fits[[1]]$nevent, n_coef = length(coef(fits[[1]])),
              dfcom = p_cox$pooled$dfcom[1]),
         per_fit(fits, coef, function(f) diag(vcov(f))), list(pooled = pooled_table(p_cox)))

imp2 <- mice(d, m = 7, seed = 12, printFlag = FALSE)
fit_lm <- with(imp2, lm(time ~ x + z + w))
p_lm <- pool(fit_lm)
fits2 <- getfit(fit_lm)
lmcase <- c(list(name = "lm", dfcom = p_lm$pooled$dfcom[1]),
            per_fit(fits2, coef, function(f) diag(vcov(f))), list(pooled = pooled_table(p_lm)))

scalar <- function(name, Q, U, n, k) {
  s <- pool.scalar(Q, U, n = n, k = k)
  list(name = name, estimates = as.list(Q), variances = as.list(U), dfcom = if (is.infinite(n)) "Inf" else n - k,
       pooled = list(estimate = s$qbar, ubar = s$ubar, b = s$b, t = s$t, df = s$df, riv = s$r, fmi = s$fmi))
}
Q1 <- c(0.31, 0.35, 0.28, 0.40, 0.33, 0.30, 0.37, 0.29, 0.36, 0.32)
U1 <- c(0.010, 0.011, 0.0095, 0.012, 0.0102, 0.0099, 0.0108, 0.0097, 0.0111, 0.0104)
scalars <- list(scalar("scalar_inf", Q1, U1, Inf, 1), scalar("scalar_small", Q1[1:4], U1[1:4], 20, 3),
                scalar("scalar_nob", rep(0.5, 3), c(0.02, 0.02, 0.02), 30, 2))

write_json(list(versions = versions, cases = c(list(cox, lmcase), scalars)), file.path(out_dir, "mi_reference.json"),
           auto_unbox = TRUE, digits = NA, pretty = TRUE, na = "null")
