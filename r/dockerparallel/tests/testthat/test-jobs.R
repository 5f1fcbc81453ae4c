test_that("a job submitted from one R session is collected from another", {
  cluster <- testCluster()
  job <- submitJob(cluster, 1:8, function(x, y) x + y, y = 100, job = paste0("durable-", Sys.getpid()))
  script <- tempfile(fileext = ".R")
  writeLines(c(
    "library(dockerparallel)",
    sprintf("cluster <- makeDockerCluster(jobQueueName = '%s', verbose = 0, stopClusterOnExit = FALSE)", cluster$jobQueueName),
    "cluster$reconnect()",
    sprintf("cat(unlist(collectJob(cluster, '%s')), sep = ' ')", job)), script)
  output <- system2(file.path(R.home("bin"), "Rscript"), script, stdout = TRUE, stderr = TRUE)
  expect_equal(tail(output, 1), paste(101:108, collapse = " "))
  expect_error(collectJob(cluster, "no-such-job"), "there is no job 'no-such-job'")
})

test_that("BiocParallel's bplapply runs on the cluster, and BPREDO reruns the failed elements only", {
  skip_if_not_installed("BiocParallel")
  testCluster()
  library(BiocParallel)
  expect_s4_class(bpparam(), "DockerParam")
  expect_equal(unlist(bplapply(1:5, function(x, y) x + y, y = 1)), 2:6)
  marker <- tempfile()
  fragile <- function(x, path) if (x == 3 && !file.exists(path)) stop("three is fragile") else x * 10
  error <- tryCatch(bplapply(1:4, fragile, path = marker), error = function(e) e)
  expect_s3_class(error, "bplist_error")
  expect_match(conditionMessage(error), "1 remote errors, element index: 3")
  expect_match(conditionMessage(error), "three is fragile")
  partial <- attr(error, "result")
  expect_equal(bpok(partial), c(TRUE, TRUE, FALSE, TRUE))
  file.create(marker)
  expect_equal(unlist(bplapply(1:4, fragile, path = marker, BPREDO = partial)), c(10, 20, 30, 40))
  # bpmapply passes the user's function as an argument: its globals travel with it.
  k <- 1000
  expect_equal(unlist(bpmapply(function(x, y) x + y + k, 1:3, 4:6)), c(1005, 1007, 1009))
  expect_equal(bpvec(1:10, sqrt), sqrt(1:10))
  # A time limit per element.
  limited <- DockerParam(testCluster(), timeout = 1, stop.on.error = TRUE)
  slow <- tryCatch(bplapply(1:2, function(x) { if (x == 2) Sys.sleep(10); x }, BPPARAM = limited), error = function(e) e)
  expect_match(conditionMessage(slow), "timed out after 1")
  expect_error(bpiterate(function() NULL, identity), "bpiterate\\(\\) is not supported by DockerParam")
})

test_that("a dial-back cluster serves parLapply, doParallel and future unchanged", {
  cluster <- testCluster()
  # A call longer than the set-up time is fine: the set-up timeout is not the connection's.
  short <- makeDialBackCluster(cluster, workers = 1, timeout = 5)
  expect_equal(parallel::clusterEvalQ(short, { Sys.sleep(7); "slow call done" })[[1]], "slow call done")
  parallel::stopCluster(short)
  nodes <- makeDialBackCluster(cluster, workers = 2)
  on.exit({ parallel::stopCluster(nodes); registerDoDockerParallel(cluster) }, add = TRUE)
  expect_s3_class(nodes, "SOCKcluster")
  pids <- unlist(parallel::parLapply(nodes, 1:6, function(x) Sys.getpid()))
  expect_length(unique(pids), 2)
  expect_false(Sys.getpid() %in% pids)
  skip_if_not_installed("doParallel")
  doParallel::registerDoParallel(nodes)
  expect_equal(foreach::foreach(i = 1:4, .combine = c) %dopar% (i^2), c(1, 4, 9, 16))
  skip_if_not_installed("future")
  future::plan(future::cluster, workers = nodes)
  on.exit(future::plan(future::sequential), add = TRUE)
  expect_equal(future::value(future::future(21 * 2)), 42)
})
