# The R package's tests run against real clusters of the dockerparallel program (on the PATH, or
# DOCKERPARALLEL_PROGRAM). `.ci/run` runs them; see docs/r.md.
library(testthat)
library(dockerparallel)
test_check("dockerparallel")
