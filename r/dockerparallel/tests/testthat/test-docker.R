# On Docker: worker containers from an image with R (DOCKERPARALLEL_R_IMAGE, which `.ci/run`
# builds from a Debian root filesystem with r-base-core) install R packages at start-up, run
# foreach loops, and lose nothing when one is killed. DOCKERPARALLEL_REQUIRE_DOCKER=1 makes a
# missing image or daemon a failure instead of a skip.
dockerImage <- Sys.getenv("DOCKERPARALLEL_R_IMAGE")
dockerRequired <- identical(Sys.getenv("DOCKERPARALLEL_REQUIRE_DOCKER"), "1")

test_that("a foreach loop runs in Docker containers that installed an R package at start-up, and survives a killed container", {
  if (!nzchar(dockerImage)) {
    if (dockerRequired) fail("DOCKERPARALLEL_R_IMAGE is not set: build an R worker image (see docs/r.md)")
    skip("no R worker image (DOCKERPARALLEL_R_IMAGE)")
  }
  name <- paste0("rdocker-", Sys.getpid())
  cluster <- makeDockerCluster(provider = "docker", image = dockerImage, workerNumber = 2, jobQueueName = name,
                               serverPort = 0, RPackages = "iterators", verbose = 0)
  on.exit({ cluster$stopCluster(ignoreError = TRUE); registerDoDockerParallel(testCluster()) }, add = TRUE)
  cluster$startCluster()
  # iterators is not in the image: the containers installed it (Debian's r-cran-iterators).
  values <- foreach::foreach(i = 1:10, .combine = c, .packages = "iterators") %dopar% iterators::nextElem(iterators::iter(i * 2))
  expect_equal(values, (1:10) * 2)
  containers <- system2("docker", c("ps", "-q", "--filter", paste0("name=dockerparallel-", name, "-worker")), stdout = TRUE)
  expect_length(containers, 2)
  job <- submitJob(cluster, 1:30, function(i) { Sys.sleep(0.2); i * i })
  waitFor("a few finished elements", function() {
    dockerparallel:::apiRequest(cluster$api, "GET", paste0("/api/v1/jobs/", job))$succeeded >= 3
  })
  system2("docker", c("kill", containers[1]), stdout = FALSE)
  expect_equal(unlist(collectJob(cluster, job)), (1:30)^2)
  cluster$stopCluster()
  left <- system2("docker", c("ps", "-aq", "--filter", paste0("name=dockerparallel-", name)), stdout = TRUE)
  expect_length(left, 0)
})
