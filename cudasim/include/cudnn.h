// cudasim: cuDNN is not emulated. Handles and descriptors can be created (so minidl's per-device
// context comes up), and every other call returns CUDNN_STATUS_NOT_SUPPORTED, which CUDNN_CHECK
// reports with the call's name. Tests skip the cuDNN path under the emulator and say so.
#pragma once

#include <cstddef>

#include "cuda_runtime.h"

#define CUDNN_MAJOR 9
#define CUDNN_MINOR 0
#define CUDNN_PATCHLEVEL 0
#define CUDNN_VERSION 90000
#define CUDNN_BN_MIN_EPSILON 0.0

enum cudnnStatus_t {
  CUDNN_STATUS_SUCCESS = 0,
  CUDNN_STATUS_NOT_INITIALIZED = 1001,
  CUDNN_STATUS_BAD_PARAM = 2000,
  CUDNN_STATUS_NOT_SUPPORTED = 3000,
  CUDNN_STATUS_INTERNAL_ERROR = 4000,
  CUDNN_STATUS_EXECUTION_FAILED = 5000,
};
enum cudnnDataType_t {
  CUDNN_DATA_FLOAT = 0,
  CUDNN_DATA_DOUBLE = 1,
  CUDNN_DATA_HALF = 2,
  CUDNN_DATA_BFLOAT16 = 9,
};
enum cudnnTensorFormat_t { CUDNN_TENSOR_NCHW = 0, CUDNN_TENSOR_NHWC = 1 };
enum cudnnNanPropagation_t { CUDNN_NOT_PROPAGATE_NAN = 0, CUDNN_PROPAGATE_NAN = 1 };
enum cudnnActivationMode_t {
  CUDNN_ACTIVATION_SIGMOID = 0,
  CUDNN_ACTIVATION_RELU = 1,
  CUDNN_ACTIVATION_TANH = 2,
  CUDNN_ACTIVATION_CLIPPED_RELU = 3,
  CUDNN_ACTIVATION_ELU = 4,
  CUDNN_ACTIVATION_IDENTITY = 5,
};
enum cudnnBatchNormMode_t {
  CUDNN_BATCHNORM_PER_ACTIVATION = 0,
  CUDNN_BATCHNORM_SPATIAL = 1,
  CUDNN_BATCHNORM_SPATIAL_PERSISTENT = 2,
};
enum cudnnPoolingMode_t {
  CUDNN_POOLING_MAX = 0,
  CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING = 1,
  CUDNN_POOLING_AVERAGE_COUNT_EXCLUDE_PADDING = 2,
  CUDNN_POOLING_MAX_DETERMINISTIC = 3,
};
enum cudnnConvolutionMode_t { CUDNN_CONVOLUTION = 0, CUDNN_CROSS_CORRELATION = 1 };
enum cudnnMathType_t {
  CUDNN_DEFAULT_MATH = 0,
  CUDNN_TENSOR_OP_MATH = 1,
  CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION = 2,
  CUDNN_FMA_MATH = 3,
};
enum cudnnDeterminism_t { CUDNN_NON_DETERMINISTIC = 0, CUDNN_DETERMINISTIC = 1 };
enum cudnnConvolutionFwdAlgo_t { CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM = 0 };
enum cudnnConvolutionBwdDataAlgo_t { CUDNN_CONVOLUTION_BWD_DATA_ALGO_0 = 0 };
enum cudnnConvolutionBwdFilterAlgo_t { CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0 = 0 };

struct cudnnContext;
struct cudnnTensorStruct;
struct cudnnFilterStruct;
struct cudnnConvolutionStruct;
struct cudnnActivationStruct;
struct cudnnPoolingStruct;
using cudnnHandle_t = cudnnContext*;
using cudnnTensorDescriptor_t = cudnnTensorStruct*;
using cudnnFilterDescriptor_t = cudnnFilterStruct*;
using cudnnConvolutionDescriptor_t = cudnnConvolutionStruct*;
using cudnnActivationDescriptor_t = cudnnActivationStruct*;
using cudnnPoolingDescriptor_t = cudnnPoolingStruct*;

template <class Algo>
struct cudnnAlgoPerfSim {
  Algo algo;
  cudnnStatus_t status;
  float time;
  size_t memory;
  cudnnDeterminism_t determinism;
  cudnnMathType_t mathType;
  int reserved[3];
};
using cudnnConvolutionFwdAlgoPerf_t = cudnnAlgoPerfSim<cudnnConvolutionFwdAlgo_t>;
using cudnnConvolutionBwdDataAlgoPerf_t = cudnnAlgoPerfSim<cudnnConvolutionBwdDataAlgo_t>;
using cudnnConvolutionBwdFilterAlgoPerf_t = cudnnAlgoPerfSim<cudnnConvolutionBwdFilterAlgo_t>;

size_t cudnnGetVersion();
const char* cudnnGetErrorString(cudnnStatus_t s);
void cudnnGetLastErrorString(char* message, size_t max_size);

namespace cudasim::detail {
cudnnStatus_t cudnn_not_supported(const char* call);
void* cudnn_dummy_object();
}  // namespace cudasim::detail

// Handles and descriptors: created (as a dummy non-null object), configured, destroyed.
#define CUDASIM_CUDNN_CREATE(name, type)                                          \
  inline cudnnStatus_t name(type* p) {                                            \
    *p = static_cast<type>(::cudasim::detail::cudnn_dummy_object());              \
    return CUDNN_STATUS_SUCCESS;                                                  \
  }
#define CUDASIM_CUDNN_OK(name)                                                    \
  template <class... A>                                                           \
  inline cudnnStatus_t name(A&&...) {                                             \
    return CUDNN_STATUS_SUCCESS;                                                  \
  }
#define CUDASIM_CUDNN_UNSUPPORTED(name)                                           \
  template <class... A>                                                           \
  inline cudnnStatus_t name(A&&...) {                                             \
    return ::cudasim::detail::cudnn_not_supported(#name);                         \
  }

CUDASIM_CUDNN_CREATE(cudnnCreate, cudnnHandle_t)
CUDASIM_CUDNN_CREATE(cudnnCreateTensorDescriptor, cudnnTensorDescriptor_t)
CUDASIM_CUDNN_CREATE(cudnnCreateFilterDescriptor, cudnnFilterDescriptor_t)
CUDASIM_CUDNN_CREATE(cudnnCreateConvolutionDescriptor, cudnnConvolutionDescriptor_t)
CUDASIM_CUDNN_CREATE(cudnnCreateActivationDescriptor, cudnnActivationDescriptor_t)
CUDASIM_CUDNN_CREATE(cudnnCreatePoolingDescriptor, cudnnPoolingDescriptor_t)
CUDASIM_CUDNN_OK(cudnnDestroy)
CUDASIM_CUDNN_OK(cudnnSetStream)
CUDASIM_CUDNN_OK(cudnnDestroyTensorDescriptor)
CUDASIM_CUDNN_OK(cudnnDestroyFilterDescriptor)
CUDASIM_CUDNN_OK(cudnnDestroyConvolutionDescriptor)
CUDASIM_CUDNN_OK(cudnnDestroyActivationDescriptor)
CUDASIM_CUDNN_OK(cudnnDestroyPoolingDescriptor)
CUDASIM_CUDNN_OK(cudnnSetTensor4dDescriptor)
CUDASIM_CUDNN_OK(cudnnSetFilter4dDescriptor)
CUDASIM_CUDNN_OK(cudnnSetConvolution2dDescriptor)
CUDASIM_CUDNN_OK(cudnnSetConvolutionMathType)
CUDASIM_CUDNN_OK(cudnnSetActivationDescriptor)
CUDASIM_CUDNN_OK(cudnnSetPooling2dDescriptor)
CUDASIM_CUDNN_OK(cudnnDeriveBNTensorDescriptor)
// Every computation and algorithm query.
CUDASIM_CUDNN_UNSUPPORTED(cudnnGetConvolutionForwardAlgorithmMaxCount)
CUDASIM_CUDNN_UNSUPPORTED(cudnnGetConvolutionBackwardDataAlgorithmMaxCount)
CUDASIM_CUDNN_UNSUPPORTED(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount)
CUDASIM_CUDNN_UNSUPPORTED(cudnnGetConvolutionForwardAlgorithm_v7)
CUDASIM_CUDNN_UNSUPPORTED(cudnnGetConvolutionBackwardDataAlgorithm_v7)
CUDASIM_CUDNN_UNSUPPORTED(cudnnGetConvolutionBackwardFilterAlgorithm_v7)
CUDASIM_CUDNN_UNSUPPORTED(cudnnFindConvolutionForwardAlgorithmEx)
CUDASIM_CUDNN_UNSUPPORTED(cudnnFindConvolutionBackwardDataAlgorithmEx)
CUDASIM_CUDNN_UNSUPPORTED(cudnnFindConvolutionBackwardFilterAlgorithmEx)
CUDASIM_CUDNN_UNSUPPORTED(cudnnGetConvolutionForwardWorkspaceSize)
CUDASIM_CUDNN_UNSUPPORTED(cudnnGetConvolutionBackwardDataWorkspaceSize)
CUDASIM_CUDNN_UNSUPPORTED(cudnnGetConvolutionBackwardFilterWorkspaceSize)
CUDASIM_CUDNN_UNSUPPORTED(cudnnConvolutionForward)
CUDASIM_CUDNN_UNSUPPORTED(cudnnConvolutionBackwardData)
CUDASIM_CUDNN_UNSUPPORTED(cudnnConvolutionBackwardFilter)
CUDASIM_CUDNN_UNSUPPORTED(cudnnConvolutionBackwardBias)
CUDASIM_CUDNN_UNSUPPORTED(cudnnAddTensor)
CUDASIM_CUDNN_UNSUPPORTED(cudnnActivationForward)
CUDASIM_CUDNN_UNSUPPORTED(cudnnActivationBackward)
CUDASIM_CUDNN_UNSUPPORTED(cudnnPoolingForward)
CUDASIM_CUDNN_UNSUPPORTED(cudnnPoolingBackward)
CUDASIM_CUDNN_UNSUPPORTED(cudnnBatchNormalizationForwardTraining)
CUDASIM_CUDNN_UNSUPPORTED(cudnnBatchNormalizationForwardInference)
CUDASIM_CUDNN_UNSUPPORTED(cudnnBatchNormalizationBackward)

#undef CUDASIM_CUDNN_CREATE
#undef CUDASIM_CUDNN_OK
#undef CUDASIM_CUDNN_UNSUPPORTED
