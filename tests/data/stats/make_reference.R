# Reference values for tests/test_stats.py, computed with R packages independent of helpers/stats.py.
#
# Run (from the repository root; needs R with pROC, rms and Hmisc, e.g. Debian's
# r-base-core r-cran-proc r-cran-rms r-cran-hmisc):
#     Rscript tests/data/stats/make_reference.R
# Written with R 4.2.2, pROC 1.18.0, rms 6.5.0, Hmisc 4.8.0. The tests never run R: they read the CSV files
# this script writes next to itself.
#
#   asah.csv            pROC's aSAH data (113 patients with aneurysmal subarachnoid haemorrhage; outcome Poor = 1)
#                       plus two-fold cross-fitted logistic-model probabilities p_old (age + gender) and
#                       p_new (age + gender + s100b + wfns): out-of-fold, hence not perfectly calibrated.
#   reference.csv       name,value pairs (17 significant digits).
#   hanley_mcneil.csv   Hanley & McNeil (1982, Radiology 143:29-36) Table 1: 109 CT images rated 1-5 by a radiologist.
#   fisher_rxc.csv      a 3x2 table with small expected counts and R's exact Fisher(-Freeman-Halton) p-value.

suppressMessages({library(pROC); library(rms); library(Hmisc)})
here <- local({a <- commandArgs(FALSE); f <- sub("^--file=", "", a[grep("^--file=", a)]); dirname(normalizePath(f))})
out <- list()
put <- function(name, value) out[[name]] <<- unname(value)

data(aSAH)
y <- as.integer(aSAH$outcome == "Poor")
d <- data.frame(patient = seq_len(nrow(aSAH)), outcome = y, s100b = aSAH$s100b, ndka = aSAH$ndka,
                wfns = as.integer(as.character(aSAH$wfns)), age = aSAH$age, female = as.integer(aSAH$gender == "Female"))
fold <- (d$patient %% 2) + 1
d$p_old <- NA_real_; d$p_new <- NA_real_
for (k in 1:2) {
  tr <- fold != k; te <- fold == k
  m_old <- glm(outcome ~ age + female, binomial, data = d[tr, ])
  m_new <- glm(outcome ~ age + female + s100b + wfns, binomial, data = d[tr, ])
  d$p_old[te] <- predict(m_old, d[te, ], type = "response")
  d$p_new[te] <- predict(m_new, d[te, ], type = "response")
}
# rounded to 12 decimals so that the CSV text (15 significant digits) holds exactly the values used below
d$p_old <- round(d$p_old, 12); d$p_new <- round(d$p_new, 12)
write.csv(d, file.path(here, "asah.csv"), row.names = FALSE)

# -- pROC: AUC, DeLong CI (ci.auc method = "delong"), DeLong variance, paired DeLong test -------------------------
for (s in c("s100b", "ndka", "wfns", "p_old", "p_new")) {
  r <- roc(d$outcome, d[[s]], levels = c(0, 1), direction = "<", quiet = TRUE)
  ci <- ci.auc(r, method = "delong", conf.level = 0.95)
  put(paste0("proc.", s, ".auc"), as.numeric(auc(r)))
  put(paste0("proc.", s, ".ci95.lower"), ci[1]); put(paste0("proc.", s, ".ci95.upper"), ci[3])
  ci90 <- ci.auc(r, method = "delong", conf.level = 0.90)
  put(paste0("proc.", s, ".ci90.lower"), ci90[1]); put(paste0("proc.", s, ".ci90.upper"), ci90[3])
  put(paste0("proc.", s, ".var"), var(r, method = "delong"))
}
# Stratified percentile bootstrap (pROC's default for method = "bootstrap"), many resamples: a Monte Carlo
# reference for the seeded Python bootstrap (which uses a different random number generator).
set.seed(20240501)
r <- roc(d$outcome, d$s100b, levels = c(0, 1), direction = "<", quiet = TRUE)
cib <- ci.auc(r, method = "bootstrap", boot.n = 20000, boot.stratified = TRUE, conf.level = 0.95, progress = "none")
put("proc.s100b.boot20000.lower", cib[1]); put("proc.s100b.boot20000.upper", cib[3])
pairs <- list(c("wfns", "s100b"), c("s100b", "ndka"), c("wfns", "ndka"), c("p_new", "p_old"))
for (pr in pairs) {
  r1 <- roc(d$outcome, d[[pr[1]]], levels = c(0, 1), direction = "<", quiet = TRUE)
  r2 <- roc(d$outcome, d[[pr[2]]], levels = c(0, 1), direction = "<", quiet = TRUE)
  t <- roc.test(r1, r2, method = "delong", paired = TRUE)
  key <- paste0("proc.test.", pr[1], ".", pr[2])
  put(paste0(key, ".z"), t$statistic); put(paste0(key, ".p"), t$p.value)
  put(paste0(key, ".cov"), cov(r1, r2, method = "delong"))
}

# -- Calibration: glm fits (Wald = confint.default) and rms::val.prob -------------------------------------------
lp <- qlogis(d$p_new)
citl <- glm(d$outcome ~ 1, offset = lp, family = binomial)
put("cal.intercept", coef(citl)[1]); put("cal.intercept.se", sqrt(vcov(citl)[1, 1]))
put("cal.intercept.lower", confint.default(citl)[1, 1]); put("cal.intercept.upper", confint.default(citl)[1, 2])
slp <- glm(d$outcome ~ lp, family = binomial)
put("cal.slope", coef(slp)[2]); put("cal.slope.se", sqrt(vcov(slp)[2, 2]))
put("cal.slope.lower", confint.default(slp)[2, 1]); put("cal.slope.upper", confint.default(slp)[2, 2])
vp <- val.prob(d$p_new, d$outcome, pl = FALSE)
put("valprob.slope", vp["Slope"]); put("valprob.brier", vp["Brier"]); put("valprob.c", vp["C (ROC)"])

# -- Hosmer-Lemeshow: ResourceSelection::hoslem.test (version 0.3-5). ResourceSelection is not packaged for
# Debian, so its function body is reproduced verbatim here (GPL-2; quantile type 7 breaks, cut(include.lowest = TRUE),
# chi-square over the event and non-event cells, df = g - 2).
hoslem.test <- function(x, y, g = 10) {
  DNAME <- paste(deparse(substitute(x)), deparse(substitute(y)), sep = ", ")
  METHOD <- "Hosmer and Lemeshow goodness of fit (GOF) test"
  yhat <- y
  y <- x
  qq <- unique(quantile(yhat, probs = seq(0, 1, 1/g)))
  cutyhat <- cut(yhat, breaks = qq, include.lowest = TRUE)
  observed <- xtabs(cbind(y0 = 1 - y, y1 = y) ~ cutyhat)
  expected <- xtabs(cbind(yhat0 = 1 - yhat, yhat1 = yhat) ~ cutyhat)
  chisq <- sum((observed - expected)^2/expected)
  PVAL = 1 - pchisq(chisq, g - 2)
  PARAMETER <- g - 2
  names(chisq) <- "X-squared"
  names(PARAMETER) <- "df"
  structure(list(statistic = chisq, parameter = PARAMETER, p.value = PVAL, method = METHOD, data.name = DNAME,
                 observed = observed, expected = expected), class = "htest")
}
for (g in c(10, 5)) {
  h <- hoslem.test(d$outcome, d$p_new, g = g)
  put(paste0("hl.g", g, ".statistic"), h$statistic); put(paste0("hl.g", g, ".p"), h$p.value)
  put(paste0("hl.g", g, ".df"), h$parameter)
  ob <- h$observed; ex <- h$expected
  for (j in seq_len(nrow(ob))) {
    put(paste0("hl.g", g, ".group", j, ".obs1"), ob[j, "y1"]); put(paste0("hl.g", g, ".group", j, ".exp1"), ex[j, "yhat1"])
    put(paste0("hl.g", g, ".group", j, ".obs0"), ob[j, "y0"]); put(paste0("hl.g", g, ".group", j, ".exp0"), ex[j, "yhat0"])
  }
}

# -- NRI (category-free) and IDI: Hmisc::improveProb(x1 = old, x2 = new, y) ------------------------------------
ip <- improveProb(d$p_old, d$p_new, d$outcome)
for (nm in c("na", "nb", "pup.ev", "pup.ne", "pdown.ev", "pdown.ne", "nri", "se.nri", "z.nri", "nri.ev", "se.nri.ev",
             "nri.ne", "se.nri.ne", "idi", "se.idi", "z.idi", "improveSens", "improveSpec"))
  put(paste0("hmisc.", nm), ip[[nm]])

# -- Hanley & McNeil (1982) Table 1 -------------------------------------------------------------------------------
hm <- data.frame(rating = 1:5, normal = c(33, 6, 6, 11, 2), abnormal = c(3, 2, 2, 11, 33))
write.csv(hm, file.path(here, "hanley_mcneil.csv"), row.names = FALSE)
yy <- c(rep(0, sum(hm$normal)), rep(1, sum(hm$abnormal)))
ss <- c(rep(hm$rating, hm$normal), rep(hm$rating, hm$abnormal))
r <- roc(yy, ss, levels = c(0, 1), direction = "<", quiet = TRUE)
ci <- ci.auc(r, method = "delong")
put("hm.auc", as.numeric(auc(r))); put("hm.ci95.lower", ci[1]); put("hm.ci95.upper", ci[3])

# -- Fisher's exact test on a 3x2 table (network algorithm, exact) -----------------------------------------------
tab <- matrix(c(8, 2, 3, 1, 5, 4), nrow = 3, dimnames = list(level = c("a", "b", "c"), group = c("g0", "g1")))
write.csv(data.frame(level = rownames(tab), g0 = tab[, 1], g1 = tab[, 2]), file.path(here, "fisher_rxc.csv"), row.names = FALSE)
put("fisher.rxc.p", fisher.test(tab)$p.value)

ref <- data.frame(name = names(out), value = trimws(formatC(unlist(out), digits = 17, format = "g")))
write.csv(ref, file.path(here, "reference.csv"), row.names = FALSE, quote = FALSE)
cat("wrote", nrow(ref), "reference values\n")
