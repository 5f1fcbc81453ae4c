library(foreach)

test_that("the cluster object has the original's interface and reports its workers", {
  cluster <- testCluster()
  expect_s3_class(cluster, "DockerCluster")
  for (method in c("startCluster", "stopCluster", "setWorkerNumber", "getWorkerNumbers", "clusterExists", "reconnect", "update")) {
    expect_true(is.function(cluster[[method]]), info = method)
  }
  expect_true(cluster$clusterExists())
  numbers <- cluster$getWorkerNumbers()
  expect_equal(numbers$expected, 2)
  expect_equal(numbers$running + numbers$initializing, 2)
  expect_output(print(cluster), "Connected at http")
  expect_equal(foreach::getDoParName(), "doDockerParallel")
  expect_equal(foreach::getDoParWorkers(), 2)
})

test_that("a second cluster object reconnects to the running cluster by its name", {
  cluster <- testCluster()
  other <- makeDockerCluster(jobQueueName = cluster$jobQueueName, verbose = 0)
  expect_false(is.null(other$reconnect()$api))
  expect_equal(other$getWorkerNumbers()$expected, 2)
  # A session that only reconnects leaves the cluster running when it ends; the one that
  # started it still stops it.
  expect_false(other$stopClusterOnExit)
  cluster$reconnect()
  expect_true(cluster$stopClusterOnExit)
  registerDoDockerParallel(cluster)
})

test_that("a cluster that does not run says so", {
  missing <- makeDockerCluster(jobQueueName = "no-such-cluster", verbose = 0, stopClusterOnExit = FALSE)
  expect_false(missing$clusterExists())
  expect_error(missing$reconnect(), "no cluster named 'no-such-cluster' is running")
  expect_equal(missing$getWorkerNumbers(), list(initializing = 0L, running = 0L, expected = 1L))
})

test_that("bad arguments are clear errors", {
  expect_error(makeDockerCluster(workerNumber = -1), "workerNumber must be a number of 0 or more")
  expect_error(makeDockerCluster(jobQueueName = "a b"), "jobQueueName 'a b' must be letters")
  expect_error(makeDockerCluster(provider = "local", RPackages = "foreach"), "local provider")
  expect_error(makeDockerCluster(provider = "nowhere"), "should be one of")
})

test_that("setWorkerNumber scales a running cluster", {
  cluster <- makeDockerCluster(workerNumber = 1, jobQueueName = paste0("rscale-", Sys.getpid()), serverPort = 0, verbose = 0)
  on.exit(cluster$stopCluster(ignoreError = TRUE), add = TRUE)
  cluster$startCluster()
  cluster$setWorkerNumber(3)
  waitFor("three running workers", function() cluster$getWorkerNumbers()$running == 3)
  cluster$stopCluster()
  expect_false(cluster$clusterExists())
  # Its backend went with it; the shared cluster's comes back for the next tests.
  expect_equal(foreach::getDoParName(), "doSEQ")
  registerDoDockerParallel(testCluster())
})

test_that("stopping a cluster leaves another cluster's backend registered", {
  shared <- testCluster()
  other <- makeDockerCluster(workerNumber = 0, jobQueueName = paste0("rother-", Sys.getpid()), serverPort = 0, verbose = 0)
  other$startCluster()
  registerDoDockerParallel(shared)
  other$stopCluster()
  expect_equal(foreach::getDoParName(), "doDockerParallel")
  expect_equal(foreach::foreach(i = 1:2, .combine = c) %dopar% i, 1:2)
})

test_that("update() brings back a cluster whose server was killed, with its jobs", {
  cluster <- makeDockerCluster(workerNumber = 1, jobQueueName = paste0("rupdate-", Sys.getpid()), serverPort = 0, verbose = 0)
  on.exit({ cluster$stopCluster(ignoreError = TRUE); registerDoDockerParallel(testCluster()) }, add = TRUE)
  cluster$startCluster()
  job <- submitJob(cluster, 1:3, function(x) x * 10, job = "before-the-kill")
  expect_equal(unlist(collectJob(cluster, job)), c(10, 20, 30))
  processes <- system2("ps", c("-eo", "pid=,args="), stdout = TRUE)
  server <- processes[grepl(paste0("dockerparallel server --name ", cluster$jobQueueName), processes, fixed = TRUE)]
  expect_length(server, 1)
  tools::pskill(as.integer(sub("^\\s*([0-9]+).*$", "\\1", server)), tools::SIGKILL)
  waitFor("the server to be gone", function() !cluster$clusterExists())
  cluster$update()
  expect_true(cluster$clusterExists())
  # The stored job's results are still there, and new loops run.
  expect_equal(unlist(collectJob(cluster, job)), c(10, 20, 30))
  expect_equal(foreach(i = 1:3, .combine = c) %dopar% (i + 1), 2:4)
})

test_that("a job can be listed and cancelled", {
  cluster <- testCluster()
  job <- submitJob(cluster, 1:20, function(x) { Sys.sleep(0.5); x }, job = paste0("to-cancel-", Sys.getpid()))
  expect_true(job %in% listJobs(cluster)$job)
  cancelJob(cluster, job)
  jobs <- listJobs(cluster)
  mine <- jobs[jobs$job == job, ]
  expect_gt(mine$cancelled, 0)
  values <- collectJob(cluster, job)
  expect_true(any(vapply(values, function(v) inherits(v, "error") && conditionMessage(v) == "the task was cancelled", NA)))
})
