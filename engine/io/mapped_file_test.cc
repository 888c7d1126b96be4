// SPDX-License-Identifier: Apache-2.0
#include "engine/io/mapped_file.h"

#include <cstring>
#include <string>
#include <vector>

#include "common/testing/status_matchers.h"
#include "engine/io/io_test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace verdict::engine {
namespace {

using ::testing::HasSubstr;
using ::verdict::testing::StatusIs;

TEST(MappedFileTest, MapsWholeFile) {
  io_testing::TempDir dir;
  const std::vector<uint8_t> bytes = {1, 2, 3, 250, 0, 7};
  io_testing::WriteFileBytes(dir.File("a.bin"), bytes);
  ASSERT_OK_AND_ASSIGN(auto file, MappedFile::Open(dir.File("a.bin")));
  ASSERT_EQ(file->size(), bytes.size());
  EXPECT_EQ(std::memcmp(file->data(), bytes.data(), bytes.size()), 0);
  EXPECT_EQ(file->path(), dir.File("a.bin"));
}

TEST(MappedFileTest, EmptyFileIsOk) {
  io_testing::TempDir dir;
  io_testing::WriteFileBytes(dir.File("empty"), {});
  ASSERT_OK_AND_ASSIGN(auto file, MappedFile::Open(dir.File("empty")));
  EXPECT_EQ(file->size(), 0u);
  EXPECT_EQ(file->data(), nullptr);
}

TEST(MappedFileTest, MissingFileIsNotFoundAndNamesPath) {
  EXPECT_THAT(MappedFile::Open("/nonexistent/verdict/model.bin"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent/verdict/model.bin")));
}

TEST(MappedFileTest, DirectoryIsInvalidArgument) {
  io_testing::TempDir dir;
  EXPECT_THAT(MappedFile::Open(dir.path()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("directory")));
}

TEST(MappedFileTest, MapsLargeFixture) {
  ASSERT_OK_AND_ASSIGN(auto file,
                       MappedFile::Open(io_testing::FixturePath("llama3_gqa/model.safetensors")));
  EXPECT_GT(file->size(), 100000u);
}

}  // namespace
}  // namespace verdict::engine
