library(foreach)

test_that("%dopar% returns every value in order, with globals and functions of the session", {
  cluster <- testCluster()
  offset <- 10
  square <- function(x) x * x + offset
  twice <- function(x) 2 * square(x)
  result <- foreach(i = 1:50, .combine = c) %dopar% twice(i)
  expect_equal(result, 2 * ((1:50)^2 + 10))
})

test_that(".combine, several iterators and .packages work as in doParallel", {
  testCluster()
  result <- foreach(a = 1:3, b = c(10, 20, 30), .combine = rbind) %dopar% c(a, b)
  expect_equal(unname(result), cbind(1:3, c(10, 20, 30)))
  stats <- foreach(i = 1:2, .packages = "stats") %dopar% median(c(i, 5, 9))
  expect_equal(unlist(stats), c(5, 5))
})

test_that("an R error in a task names the task, its message and call", {
  testCluster()
  fails <- function(i) if (i == 3) stop("no three here") else i
  error <- tryCatch(foreach(i = 1:4) %dopar% fails(i), error = function(e) e)
  expect_s3_class(error, "dockerparallelTaskError")
  expect_match(conditionMessage(error), "task 3 failed - \"no three here\"", fixed = TRUE)
})

test_that(".errorhandling pass and remove", {
  testCluster()
  passed <- foreach(i = 1:3, .errorhandling = "pass") %dopar% if (i == 2) stop("two") else i
  expect_equal(passed[[1]], 1)
  expect_s3_class(passed[[2]], "error")
  expect_equal(conditionMessage(passed[[2]]), "two")
  expect_true(length(passed[[2]]$traceback) >= 0)
  removed <- foreach(i = 1:3, .errorhandling = "remove", .combine = c) %dopar% if (i == 2) stop("two") else i
  expect_equal(removed, c(1, 3))
})

test_that("a failing task is retried when asked", {
  testCluster()
  marker <- tempfile()
  flaky <- function(path) {
    if (!file.exists(path)) {
      file.create(path)
      stop("first attempt fails")
    }
    "second attempt"
  }
  result <- foreach(i = 1, .options.dockerparallel = list(retries = 1)) %dopar% flaky(marker)
  expect_equal(result[[1]], "second attempt")
})

test_that("a package the workers lack, an external pointer and a result too large are clear errors", {
  testCluster()
  expect_error(foreach(i = 1:2, .packages = "surelyNotInstalledPackage") %dopar% i,
               "needs the R package 'surelyNotInstalledPackage', which this worker does not have")
  pointer <- new("externalptr")
  expect_error(foreach(i = 1:2) %dopar% { pointer; i }, "the global 'pointer' holds an external pointer")
  expect_error(foreach(i = 1) %dopar% raw(30e6), "result too large")
  # The workers are fine after all that.
  expect_equal(foreach(i = 1:4, .combine = c) %dopar% (i + 1), 2:5)
})

test_that("set.seed makes a loop's random numbers reproducible, each element its own stream", {
  testCluster()
  set.seed(42)
  first <- foreach(i = 1:6, .combine = c) %dopar% runif(1)
  set.seed(42)
  second <- foreach(i = 1:6, .combine = c) %dopar% runif(1)
  expect_identical(first, second)
  expect_equal(length(unique(first)), 6)
})

test_that("R workers stay alive between tasks", {
  testCluster()
  pids <- foreach(i = 1:40, .combine = c) %dopar% Sys.getpid()
  # Two workers of one slot: at most two R processes served the forty tasks.
  expect_lte(length(unique(pids)), 2)
})

test_that("a loop of many elements goes in chunks by default; big globals are a clear error", {
  testCluster()
  result <- foreach(i = 1:500, .combine = c) %dopar% (i %% 7)
  expect_equal(result, (1:500) %% 7)
  errors <- foreach(i = 1:100, .errorhandling = "pass") %dopar% if (i == 50) stop("fifty") else i
  expect_equal(conditionMessage(errors[[50]]), "fifty")
  expect_equal(errors[[51]], 51)
  huge <- raw(25e6)
  expect_error(foreach(i = 1:2) %dopar% length(huge), "over the limit of 20 MB: its globals travel with every task \\(the biggest: huge")
  big <- raw(5e6)
  expect_equal(foreach(i = 1:2, .combine = c) %dopar% length(big), c(5e6, 5e6))
})

test_that("chunks of several elements give the same values", {
  testCluster()
  result <- foreach(i = 1:25, .combine = c, .options.dockerparallel = list(chunkSize = 4)) %dopar% (i * 3)
  expect_equal(result, (1:25) * 3)
})

test_that("a worker killed in the middle of a foreach loop loses no element", {
  cluster <- makeDockerCluster(workerNumber = 2, jobQueueName = paste0("rkill-", Sys.getpid()), serverPort = 0, verbose = 0)
  on.exit({ cluster$stopCluster(ignoreError = TRUE); registerDoDockerParallel(testCluster()) }, add = TRUE)
  cluster$startCluster()
  pids <- workerPids(cluster)
  expect_length(pids, 2)
  # When the fifth element starts, a process of its own kills one worker with SIGKILL (as a spot
  # reclaim or the OOM killer would), while the loop runs.
  marker <- tempfile()
  killer <- sprintf("for i in $(seq 1 600); do [ -f '%s' ] && break; sleep 0.05; done; kill -9 %d", marker, pids[1])
  system2("sh", c("-c", shQuote(killer)), wait = FALSE)
  values <- foreach(i = 1:30, .combine = c) %dopar% {
    if (i == 5) file.create(marker)
    Sys.sleep(0.2)
    i * i
  }
  expect_true(file.exists(marker))
  expect_equal(values, (1:30)^2)
  waitFor("the killed worker to be gone", function() length(workerPids(cluster)) == 1)
})
