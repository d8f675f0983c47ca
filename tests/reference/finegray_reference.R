# Golden values for epi_spineage.stats.fine_gray from R's cmprsk::crr, fitted to convergence.
# Run once, from the repository root:
#
#   Rscript tests/reference/finegray_reference.R
#
# crr's default (gtol = 1e-6, maxiter = 10) stops about one Newton step short of the maximum
# (up to 3e-5 relative); gtol = 1e-9, maxiter = 100 runs it to the maximum, which is what
# the Python fit computes. Each case writes its data (CSV, so the tests never need R) and
# finegray_reference.json holds, per case: the crr call, the covariate columns (after R's dummy
# coding), coef, the sandwich variance var, se = sqrt(diag(var)), the naive variance solve(inf),
# loglik, converged, n, and the SD used when the exposure is scaled per SD.
#   finegray_ties.csv    300 participants, half-year times (heavy ties between and across the three
#                        outcomes, censoring at failure times), a 3-level factor, 3 numeric covariates
#   finegray_cohort.csv  2,000 participants like the study cohort: PAD per SD, age, sex F/M, prevalent
#                        VF; missing PAD and VF (crr drops them); fracture = 1, death = 2; also
#                        death as the event of interest (failcode = 2)
#   finegray_nocens.csv  150 participants, continuous times, nobody censored (the psi term is 0)
#   finegray_codes.csv   the ties data recoded: event of interest 3, censored 9, competing 1 and 2
suppressPackageStartupMessages({
  library(cmprsk)
  library(jsonlite)
})

out_dir <- "tests/reference"
versions <- list(R = R.version.string, cmprsk = as.character(packageVersion("cmprsk")))
fit_case <- function(name, d, time, status, X, failcode = 1, cencode = 0, sd = NA) {
  f <- crr(d[[time]], d[[status]], X, failcode = failcode, cencode = cencode, gtol = 1e-9, maxiter = 100)
  list(name = name, time = time, status = status, failcode = failcode, cencode = cencode,
       columns = colnames(X), coef = unname(f$coef), var = unname(f$var), se = unname(sqrt(diag(f$var))),
       var_naive = unname(solve(f$inf)), loglik = f$loglik, converged = f$converged, n = f$n,
       n_missing = f$n.missing, sd = sd)
}

# ---------------------------------------------------------------------------------------- ties
set.seed(20261130)
n <- 300
ties <- data.frame(x1 = rnorm(n), x2 = rbinom(n, 1, 0.4), x3 = round(runif(n, 0, 5), 1),
                   grp = sample(c("a", "b", "c"), n, TRUE), stringsAsFactors = FALSE)
lp <- 0.5 * ties$x1 + 0.3 * ties$x2 - 0.1 * ties$x3 + c(a = 0, b = 0.4, c = -0.3)[ties$grp]
t1 <- rexp(n, 0.2 * exp(lp)); t2 <- rexp(n, 0.1 * exp(0.3 * ties$x1)); tc <- runif(n, 0, 10)
tt <- pmin(t1, t2, tc)
ties$etype <- ifelse(tt == t1, 1L, ifelse(tt == t2, 2L, 0L))
ties$time <- ceiling(tt * 2) / 2
write.csv(ties, file.path(out_dir, "finegray_ties.csv"), row.names = FALSE, na = "")
Xt <- model.matrix(~ x1 + x2 + x3 + grp, ties)[, -1]
cases <- list(fit_case("ties", ties, "time", "etype", Xt))

codes <- ties
codes$etype <- c(`0` = 9L, `1` = 3L, `2` = 1L)[as.character(ties$etype)]
codes$etype[codes$etype == 1L & seq_len(n) %% 2 == 0] <- 2L  # two competing codes
write.csv(codes, file.path(out_dir, "finegray_codes.csv"), row.names = FALSE, na = "")
cases[[length(cases) + 1]] <- fit_case("codes", codes, "time", "etype", Xt, failcode = 3, cencode = 9)

# ---------------------------------------------------------------------------------------- cohort-like
set.seed(15)
n <- 2000
coh <- data.frame(pad_years = rnorm(n, 0, 5), age_years = round(rnorm(n, 70, 8), 1),
                  sex = sample(c("F", "M"), n, TRUE, prob = c(0.6, 0.4)), prevalent_vf = rbinom(n, 1, 0.2),
                  stringsAsFactors = FALSE)
lp <- 0.09 * coh$pad_years + 0.04 * (coh$age_years - 70) - 0.3 * (coh$sex == "M") + 0.6 * coh$prevalent_vf
t1 <- rexp(n, 0.03 * exp(lp)); t2 <- rexp(n, 0.02 * exp(0.08 * (coh$age_years - 70))); tc <- runif(n, 1, 12)
tt <- pmin(t1, t2, tc)
coh$cr_event <- ifelse(tt == t1, 1L, ifelse(tt == t2, 2L, 0L))
coh$cr_years <- round(tt * 365.25) / 365.25  # whole days: a few ties
coh$pad_years[sample(n, 60)] <- NA
coh$prevalent_vf[sample(n, 40)] <- NA
write.csv(coh, file.path(out_dir, "finegray_cohort.csv"), row.names = FALSE, na = "")
sd_pad <- sd(coh$pad_years, na.rm = TRUE)  # over every row with PAD (cox_per_sd's convention)
Xc <- cbind(pad_years = coh$pad_years / sd_pad, age_years = coh$age_years, `sex[M]` = as.numeric(coh$sex == "M"),
            prevalent_vf = coh$prevalent_vf)
cases[[length(cases) + 1]] <- fit_case("cohort", coh, "cr_years", "cr_event", Xc, sd = sd_pad)
cases[[length(cases) + 1]] <- fit_case("cohort_death", coh, "cr_years", "cr_event", Xc, failcode = 2, sd = sd_pad)
cases[[length(cases) + 1]] <- fit_case("cohort_m1_raw", coh, "cr_years", "cr_event", Xc[, 1:3] * c(sd_pad, 1, 1)[col(Xc[, 1:3])])

# ---------------------------------------------------------------------------------------- no censoring
set.seed(3)
n <- 150
nc <- data.frame(z1 = rnorm(n), z2 = rnorm(n))
t1 <- rexp(n, exp(0.7 * nc$z1)); t2 <- rexp(n, exp(-0.4 * nc$z2))
nc$time <- pmin(t1, t2)
nc$etype <- ifelse(t1 < t2, 1L, 2L)
write.csv(nc, file.path(out_dir, "finegray_nocens.csv"), row.names = FALSE, na = "")
cases[[length(cases) + 1]] <- fit_case("nocens", nc, "time", "etype", as.matrix(nc[, c("z1", "z2")]))

write_json(list(versions = versions, cases = cases), file.path(out_dir, "finegray_reference.json"),
           auto_unbox = TRUE, digits = NA, pretty = TRUE, na = "null")
