// TensorBoard event files (what `train --tensorboard` writes beside metrics.csv), without
// TensorFlow: TFRecord framing around protobuf Event messages, encoded with io/onnx.h's
// ProtoWriter.
//
//   record  = uint64 length | uint32 masked_crc32c(length bytes) | data | uint32 masked_crc32c(data)
//   masked  = ((crc >> 15) | (crc << 17)) + 0xa282ead8          (all little-endian)
//   Event   = wall_time 1 (double), step 2 (int64), file_version 3 (string), summary 5
//   Summary = value 1 (repeated);  Summary.Value = tag 1 (string), simple_value 2 (float)
//
// The first record is Event{wall_time, file_version: "brain.Event:2"}; then one Event per scalar.
// The file is events.out.tfevents.<seconds>.<host>.<pid> in the run directory, appended to and
// flushed after each epoch (TensorBoard reads growing files).
#pragma once

#include <cstdint>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace minidl {

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) and TFRecord's mask of it.
uint32_t crc32c(const void* data, size_t n);
uint32_t masked_crc32c(const void* data, size_t n);

class EventWriter {
 public:
  // Creates the event file in `dir` and writes the file_version record; throws naming the path.
  explicit EventWriter(const std::string& dir);
  void scalar(const std::string& tag, int64_t step, double value);
  void flush();
  const std::string& path() const { return path_; }

 private:
  void record(const std::string& data);
  std::string path_;
  std::ofstream f_;
};

struct TbEvent {
  double wall_time = 0.0;
  int64_t step = 0;
  std::string file_version;
  std::vector<std::pair<std::string, float>> scalars;  // (tag, simple_value)
};
// Reads every record, checking both CRCs; throws naming the file and the record when one is
// truncated or fails its check.
std::vector<TbEvent> read_events(const std::string& path);

}  // namespace minidl
