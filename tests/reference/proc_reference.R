# Golden values for epi_spineage.stats (discrimination, agreement, table one, grouping, regression,
# FRAX proportions) from pROC and base R. Run once, from the repository root:
#
#   Rscript tests/reference/proc_reference.R
#
# It writes the data it used (CSV, so the Python tests never need R) and the results (JSON):
#   proc_asah.csv, proc_asah.json   pROC's aSAH data set: s100b, ndka, wfns (as 1..5)
#   proc_sim.csv,  proc_sim.json    simulated scores with heavy ties and missing values
#   proc_base.csv, proc_base.json   cor.test, t.test, chisq.test, fisher.test, quantile, lm,
#                                   mcnemar.test, prop.test (Wilson)
# Written with pROC 1.18.0 and R 4.x (versions recorded in the JSON).
suppressPackageStartupMessages({
  library(pROC)
  library(jsonlite)
})

out_dir <- "tests/reference"
write_fixture <- function(x, name) {
  write_json(x, file.path(out_dir, name), auto_unbox = TRUE, digits = NA, pretty = TRUE)
}
versions <- list(R = R.version.string, pROC = as.character(packageVersion("pROC")))

roc_lt <- function(y, x, direction = "<") {
  roc(y, x, levels = c(0, 1), direction = direction, quiet = TRUE)
}
single_auc <- function(y, x, direction = "<", level = 0.95) {
  keep <- !is.na(y) & !is.na(x)
  r <- roc_lt(y[keep], x[keep], direction)
  ci <- as.numeric(ci.auc(r, method = "delong", conf.level = level))
  list(auc = as.numeric(auc(r)), ci_low = ci[1], ci_high = ci[3],
       var = as.numeric(var(r, method = "delong")), n_cases = length(r$cases),
       n_controls = length(r$controls), n_dropped = sum(!keep), direction = direction, level = level)
}
paired <- function(y, a, b, direction = "<", level = 0.95) {
  keep <- !is.na(y) & !is.na(a) & !is.na(b)
  ra <- roc_lt(y[keep], a[keep], direction)
  rb <- roc_lt(y[keep], b[keep], direction)
  t <- roc.test(ra, rb, method = "delong", paired = TRUE, conf.level = level)
  list(auc_a = as.numeric(auc(ra)), auc_b = as.numeric(auc(rb)),
       z = as.numeric(t$statistic), p_value = t$p.value,
       ci_low = as.numeric(t$conf.int[1]), ci_high = as.numeric(t$conf.int[2]),
       n_dropped = sum(!keep), direction = direction, level = level)
}

# ---------------------------------------------------------------- aSAH
data(aSAH)
asah <- data.frame(outcome = as.integer(aSAH$outcome == "Poor"), s100b = aSAH$s100b,
                   ndka = aSAH$ndka, wfns = as.integer(aSAH$wfns), age = aSAH$age,
                   gender = as.character(aSAH$gender))
write.csv(asah, file.path(out_dir, "proc_asah.csv"), row.names = FALSE)
preds <- c("s100b", "ndka", "wfns")
res <- list(versions = versions, single = list(), paired = list())
for (p in preds) res$single[[p]] <- single_auc(asah$outcome, asah[[p]])
res$single[["s100b_90"]] <- single_auc(asah$outcome, asah$s100b, level = 0.9)
res$single[["ndka_gt"]] <- single_auc(asah$outcome, asah$ndka, direction = ">")
pairs <- list(c("s100b", "ndka"), c("s100b", "wfns"), c("ndka", "wfns"), c("wfns", "s100b"))
for (pr in pairs) {
  res$paired[[paste(pr, collapse = "_vs_")]] <- c(list(a = pr[1], b = pr[2]),
    paired(asah$outcome, asah[[pr[1]]], asah[[pr[2]]]))
}
write_fixture(res, "proc_asah.json")

# ---------------------------------------------------------------- simulated, heavy ties and NAs
set.seed(20250101)
n <- 700
y <- rbinom(n, 1, 0.3)
age <- round(runif(n, 45, 85))                         # integer ages: heavy ties
spine <- round(age + 3 * y + rnorm(n, 0, 6))           # integer predictions
frax <- round(plogis(-2 + 0.8 * y + rnorm(n)) * 100, 1) # one decimal: ties
neg <- round(-2 * y + rnorm(n), 1)                      # lower means case
y[sample(n, 15)] <- NA
spine[sample(n, 25)] <- NA
frax[sample(n, 20)] <- NA
sim <- data.frame(y = y, age = age, spine = spine, frax = frax, neg = neg)
write.csv(sim, file.path(out_dir, "proc_sim.csv"), row.names = FALSE, na = "")
res <- list(versions = versions, single = list(), paired = list())
for (p in c("age", "spine", "frax", "neg")) res$single[[p]] <- single_auc(sim$y, sim[[p]])
res$single[["neg_gt"]] <- single_auc(sim$y, sim$neg, direction = ">")
res$paired[["spine_vs_age"]] <- c(list(a = "spine", b = "age"), paired(sim$y, sim$spine, sim$age))
res$paired[["frax_vs_spine"]] <- c(list(a = "frax", b = "spine"), paired(sim$y, sim$frax, sim$spine))
res$paired[["age_vs_neg_gt"]] <- c(list(a = "age", b = "neg"),
                                   paired(sim$y, sim$age, sim$neg, direction = ">"))
# tiny groups: 2 cases, 3 controls
res$single[["tiny"]] <- single_auc(c(1, 1, 0, 0, 0), c(3, 2, 2, 1, 2))
res$paired[["tiny"]] <- c(list(a = "x1", b = "x2"),
                          paired(c(1, 1, 0, 0, 0), c(3, 2, 2, 1, 2), c(1, 3, 2, 2, 1)))
write_fixture(res, "proc_sim.json")

# ---------------------------------------------------------------- base R
set.seed(7)
n <- 240
base <- data.frame(
  x = round(rnorm(n, 60, 8), 2),
  grp = rbinom(n, 1, 0.4),
  cat3 = sample(c("a", "b", "c"), n, replace = TRUE, prob = c(0.5, 0.3, 0.2)),
  bin = rbinom(n, 1, 0.3),
  rare = rbinom(n, 1, 0.03),
  sex = sample(c("F", "M"), n, replace = TRUE),
  pad = round(rnorm(n, 0, 4)),
  z1 = round(rnorm(n), 3)
)
base$y <- round(base$x * 0.4 + 2 * base$bin + rnorm(n, 0, 3), 3)
base$y[sample(n, 12)] <- NA
base$x[sample(n, 9)] <- NA
base$z1[sample(n, 7)] <- NA
base$pad[sample(n, 10)] <- NA
write.csv(base, file.path(out_dir, "proc_base.csv"), row.names = FALSE, na = "")

ct <- cor.test(base$x, base$y)
ct90 <- cor.test(base$x, base$y, conf.level = 0.9)
tt <- t.test(x ~ grp, data = base, var.equal = TRUE)
tt_y <- t.test(y ~ grp, data = base, var.equal = TRUE)
an <- summary(aov(x ~ cat3, data = base))[[1]]
ch22 <- chisq.test(table(base$bin, base$grp), correct = FALSE)
ch32 <- chisq.test(table(base$cat3, base$grp), correct = FALSE)
fi22 <- fisher.test(table(base$rare, base$grp))
small <- base[1:40, ]
fi32 <- fisher.test(table(small$cat3, small$grp))
q <- function(v, type) as.numeric(quantile(v, c(1 / 3, 2 / 3), type = type, na.rm = TRUE))
fit <- lm(y ~ x + sex + bin + z1, data = base)
sm <- summary(fit)
ci <- confint(fit)
mc_tab <- matrix(c(30, 7, 15, 48), 2, 2)   # [chrono high/low] x [spine high/low]
mc <- mcnemar.test(mc_tab, correct = FALSE)
pt <- prop.test(17, 63, correct = FALSE)
pt0 <- prop.test(0, 25, correct = FALSE)

res <- list(
  versions = versions,
  cor_test = list(estimate = as.numeric(ct$estimate), statistic = as.numeric(ct$statistic),
                  p_value = ct$p.value, ci_low = ct$conf.int[1], ci_high = ct$conf.int[2],
                  n = sum(complete.cases(base$x, base$y)),
                  ci_low_90 = ct90$conf.int[1], ci_high_90 = ct90$conf.int[2]),
  t_test_x = list(statistic = as.numeric(tt$statistic), p_value = tt$p.value,
                  mean0 = mean(base$x[base$grp == 0], na.rm = TRUE),
                  sd0 = sd(base$x[base$grp == 0], na.rm = TRUE),
                  mean1 = mean(base$x[base$grp == 1], na.rm = TRUE),
                  sd1 = sd(base$x[base$grp == 1], na.rm = TRUE)),
  t_test_y = list(statistic = as.numeric(tt_y$statistic), p_value = tt_y$p.value),
  anova_x_cat3 = list(statistic = an[["F value"]][1], p_value = an[["Pr(>F)"]][1]),
  chisq_bin_grp = list(statistic = as.numeric(ch22$statistic), p_value = ch22$p.value),
  chisq_cat3_grp = list(statistic = as.numeric(ch32$statistic), p_value = ch32$p.value),
  fisher_rare_grp = list(p_value = fi22$p.value),
  fisher_cat3_grp_first40 = list(p_value = fi32$p.value),
  quantile_pad = list(type7 = q(base$pad, 7), type2 = q(base$pad, 2)),
  quantile_x = list(type7 = q(base$x, 7), type2 = q(base$x, 2)),
  lm = list(terms = c("(Intercept)", "x", "sex[M]", "bin", "z1"),
            estimate = unname(coef(sm)[, 1]), std_error = unname(coef(sm)[, 2]),
            statistic = unname(coef(sm)[, 3]), p_value = unname(coef(sm)[, 4]),
            ci_low = unname(ci[, 1]), ci_high = unname(ci[, 2]),
            r2 = sm$r.squared, adj_r2 = sm$adj.r.squared, n = nobs(fit),
            sigma = sm$sigma),
  mcnemar = list(table = as.vector(mc_tab), statistic = as.numeric(mc$statistic), p_value = mc$p.value),
  wilson = list(x = 17, n = 63, ci_low = pt$conf.int[1], ci_high = pt$conf.int[2]),
  wilson_zero = list(x = 0, n = 25, ci_low = pt0$conf.int[1], ci_high = pt0$conf.int[2])
)
write_fixture(res, "proc_base.json")
cat("wrote fixtures to", out_dir, "\n")
